"""The public backend API (tracekit.backends.Experiments): evaluate, record, digest, against a real sandbox and store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracekit import OptimizerError
from tracekit.backends import Candidate, Experiments
from tracekit.evals import Sample, Task
from tracekit.optimizer import Section, register_section
from tracekit.optimizer._context import SECTIONS

from tests._support.backends import FIXED, SEED, exact, task_for

PRINTS = "print('score:', {})\n"
CRASHES = "def check(x):\n    raise ValueError('x must be positive, got ' + str(x))\ncheck(-1)\n"


def test_evaluate_records_each_candidate_with_parent_diff_metric_status_and_trace(home: Path) -> None:
    exps = Experiments("api-rows", metric="score", proposer="mine")
    seed = exps.evaluate({"solve.py": PRINTS.format(1)}, command=["python", "solve.py"], budget_s=30)
    worse = exps.evaluate({"solve.py": PRINTS.format(0.5)}, command=["python", "solve.py"], parent=seed)
    crash = exps.evaluate({"solve.py": CRASHES}, command=["python", "solve.py"], parent=seed)
    slow = exps.evaluate({"solve.py": "import time\ntime.sleep(30)\n"}, command=["python", "solve.py"], parent=seed,
                         budget_s=1.5)
    better = exps.evaluate({"solve.py": PRINTS.format(2)}, command=["python", "solve.py"], parent=seed)
    assert [e.status for e in (seed, worse, crash, slow, better)] == ["baseline", "discard", "crash", "timeout", "keep"]
    assert seed.metric == 1.0 and crash.metric is None and slow.metric is None and better.improvement == 1.0
    rows = exps.rows()
    assert [r["experiment_id"] for r in rows] == [f"api-rows-{i:04d}" for i in range(5)]
    assert all(r["trace_id"] and r["proposer"] == "mine" and r["metric_name"] == "score" for r in rows)
    assert rows[4]["parent_id"] == seed.experiment_id and "+print('score:', 2)" in (rows[4]["diff"] or "")
    assert "ValueError: x must be positive" in (rows[2]["stderr_tail"] or "") and rows[2]["exit_code"] == 1
    assert exps.incumbent() == exps.row(better.experiment_id)
    assert (home / "optimizer" / "api-rows" / "results.tsv").read_text().count("\n") == 6


def test_the_digest_is_the_built_in_proposers_trace_sections_under_their_budgets(home: Path) -> None:
    exps = Experiments("api-digest", metric="score")
    noisy = "import sys\nsys.stderr.write('noise line\\n' * 4000)\n" + CRASHES
    crash = exps.evaluate({"solve.py": noisy}, command=["python", "solve.py"])
    digest = exps.digest(crash)
    titles = [s.title for s in SECTIONS if s.trace]
    shown = [ln[3:] for ln in digest.splitlines() if ln.startswith("## ")]
    assert shown and all(t in titles for t in shown)  # only trace sections, in their order
    errors = ("\n" + digest).split("\n## ")[1]
    errors_budget = next(s.budget for s in SECTIONS if s.name == "errors")
    assert len(errors) <= errors_budget + 100 and "lines elided" in errors and "ValueError: x must be positive" in errors
    register_section(Section("marker", "A section of mine", lambda inp: "MARK " * 50, budget=100, trace=True))
    try:
        assert "## A section of mine\nMARK" in exps.digest(crash)  # a registered trace section is in both
        assert len(exps.digest(crash, sections=["marker"])) < 140  # under its own budget
    finally:
        SECTIONS[:] = [s for s in SECTIONS if s.name != "marker"]
    with pytest.raises(OptimizerError, match="no experiments"):
        exps.digest("api-digest-9999")


def test_an_eval_task_candidate_gets_per_case_traces_and_the_digest_shows_train_cases_only(home: Path) -> None:
    exps = Experiments("api-task", metric="score")
    val = [Sample("Peru", "Lima", id="peru-val", split="val")]

    def task(c: Candidate) -> Task:
        base = task_for(c)
        return Task(list(base.dataset) + val, solver=base.solver, scorers=[exact], name="capitals", retries=0)

    seed = exps.evaluate({"prompt": SEED}, task=task)
    assert seed.status == "baseline" and seed.metric == 0.0 and len(seed.case_trace_ids) == 7
    digest = exps.digest(seed)
    assert "0/6 train cases passed" in digest and "moved to 'capitals_v2'" in digest and "tool lookup(" in digest
    assert "peru-val" not in digest
    val_trace = next(r["trace_id"] for r in seed.report.rows if r["split"] == "val")  # type: ignore[union-attr]
    assert exps.case_digest(val_trace) == ""  # an optimizer never reads a val case
    fixed = exps.evaluate({"prompt": FIXED}, task=task, parent=seed, splits=["train"])
    assert fixed.status == "keep" and fixed.metric == 1.0


def test_an_eval_task_runs_each_case_of_the_candidate_in_the_sandbox(home: Path) -> None:
    from tracekit.evals import sandboxed, scorers

    solve = "import sys\nprint({'France': 'Paris', 'Japan': 'Tokyo'}.get(sys.argv[1], 'unknown'))\n"
    exps = Experiments("api-sandboxed", metric="accuracy")

    def task(c: Candidate) -> Task:
        return Task([Sample("France", "Paris", id="fr"), Sample("Kenya", "Nairobi", id="ke")], name="caps", retries=0,
                    solver=sandboxed(["python", "solve.py", "{input}"], workspace=c.workspace, budget_s=20),
                    scorers=[scorers.exact()])

    seed = exps.evaluate({"solve.py": solve}, task=task)
    assert seed.metric == 0.5 and seed.status == "baseline"
    better = exps.evaluate({"solve.py": solve.replace("'Japan': 'Tokyo'", "'Kenya': 'Nairobi'")}, task=task, parent=seed)
    assert better.metric == 1.0 and better.status == "keep"
    from tracekit.store import Database

    runs = Database(home).sql("SELECT count(*) FROM spans WHERE kind = 'run' AND experiment_id LIKE 'api-sandboxed-%'").fetchall()
    assert runs == [(4,)]  # one sandboxed run per case and candidate


def test_hostile_candidates_are_invalid_rows_and_nothing_is_written_outside_or_through_links(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    base = tmp_path / "base"
    base.mkdir()
    (base / "solve.py").symlink_to(outside)
    (base / "sub").symlink_to(tmp_path)
    exps = Experiments("api-hostile", metric="score")
    ok = exps.evaluate({"solve.py": PRINTS.format(1)}, command=["python", "solve.py"], workspace=base)
    assert ok.metric == 1.0 and outside.read_text() == "untouched"  # the link was replaced, not written through
    through = exps.evaluate({"sub/x.py": "pwned"}, command=["python", "solve.py"], workspace=base)
    assert through.status == "invalid" and not (tmp_path / "x.py").exists()
    for files in ({"../x.py": "a"}, {"/tmp/x.py": "a"}, {"a\0b": "a"}, {"big.py": "x" * (9 * 2**20)}, {"f.py": b"bytes"},
                  {"f.py": "\ud800"}):
        ev = exps.evaluate(files, command=["python", "solve.py"])  # type: ignore[arg-type]
        assert ev.status == "invalid" and ev.error and ev.metric is None
    rows = exps.rows()
    assert [r["status"] for r in rows] == ["baseline"] + ["invalid"] * 7 and all(r["error"] for r in rows[1:])


def test_caller_mistakes_are_clear_errors_that_lose_nothing_stored(home: Path) -> None:
    exps = Experiments("api-errors", metric="score")
    seed = exps.evaluate({"solve.py": PRINTS.format(1)}, command=["python", "solve.py"])
    with pytest.raises(OptimizerError, match="exactly one of"):
        exps.evaluate({"solve.py": "x"})
    with pytest.raises(OptimizerError, match="not an experiment of run api-errors"):
        exps.evaluate({"solve.py": "x"}, command=["python", "solve.py"], parent="elsewhere-0001")
    with pytest.raises(OptimizerError, match="budget_s"):
        exps.evaluate({"solve.py": "x"}, command=["python", "solve.py"], budget_s=float("nan"))
    with pytest.raises(OptimizerError, match="finite number"):
        exps.record({"solve.py": "x"}, metric=float("inf"))
    for bad in ("../up", "a/b", "", ".hidden"):
        with pytest.raises(OptimizerError, match="run id"):
            Experiments(bad)
    with pytest.raises(OptimizerError, match="direction"):
        Experiments("x", direction="up")
    assert [r["experiment_id"] for r in exps.rows()] == [seed.experiment_id]


def test_experiment_numbers_stay_unique_when_processes_record_at_once(home: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, tracekit
        tracekit.configure(home={str(home)!r})
        from tracekit.backends import Experiments
        exps = Experiments("api-race", metric="score")
        for i in range(6):
            exps.record({{"f.py": sys.argv[1] + str(i)}}, metric=float(i), status="discard")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, f"p{n}-"]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    rows = Experiments("api-race", metric="score").rows()
    assert len(rows) == 18 and sorted(r["seq"] for r in rows) == list(range(18))


@pytest.mark.parametrize("budget", [1, 20, 40, 41, 100])
def test_a_one_line_text_cut_to_a_small_budget_is_never_longer_than_it_was(budget: int) -> None:
    """elide() on one long line: below 41 characters of budget it used to return the whole text after the marker."""
    from tracekit.optimizer._section import elide

    text = "MARK " * 50
    cut = elide(text, budget)
    assert len(cut) < len(text) and "chars elided" in cut


def test_threads_recording_into_one_run_lose_no_row(home: Path) -> None:
    """GEPA's engine evaluates candidates from a thread pool through one Experiments object."""
    import threading

    exps = Experiments("api-threads", metric="score")

    def work(n: int) -> None:
        for i in range(8):
            exps.record({"f.py": f"{n}-{i}"}, metric=float(i), status="discard")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = exps.rows()
    assert sorted(r["seq"] for r in rows) == list(range(32))
    tsv = (home / "optimizer" / "api-threads" / "results.tsv").read_text().splitlines()
    assert len(tsv) == 33  # the header and every row: regenerated from all of them
