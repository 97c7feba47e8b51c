"""The eval harness with pure-Python tasks: datasets, scorers, aggregates, execution, traces, resume, compare."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

import tracekit
from tracekit import EvalError
from tracekit.evals import (
    Dataset,
    Sample,
    Score,
    Task,
    TransientError,
    compare,
    pass_at_k,
    run_eval,
    scorers,
    stderr,
)

# ---- datasets ------------------------------------------------------------------------------------


def test_dataset_loaders_jsonl_csv_parquet_json_and_lists(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": "q1", "input": "2+2", "target": "4", "split": "train", "difficulty": "easy"},
        {"id": "q2", "input": "3*3", "target": "9", "split": "val", "metadata": {"source": "book"}},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text("id,question,answer,split,difficulty\nq1,2+2,4,train,easy\nq2,3*3,9,val,\n")
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "metadata"} for r in rows]), tmp_path / "d.parquet")

    for ds in (Dataset.load(tmp_path / "d.jsonl"), Dataset.load(tmp_path / "d.json"),
               Dataset.load(tmp_path / "d.csv", input="question", target="answer"),
               Dataset.load(tmp_path / "d.parquet"), Dataset.from_list(rows)):
        assert [s.id for s in ds] == ["q1", "q2"]
        assert [s.input for s in ds] == ["2+2", "3*3"]
        assert [s.target for s in ds] == ["4", "9"]
        assert [s.split for s in ds] == ["train", "val"]
        assert ds[0].metadata["difficulty"] == "easy"
        assert len(ds.split("val")) == 1
    assert Dataset.load(tmp_path / "d.jsonl")[1].metadata == {"source": "book"}


def test_sample_ids_are_stable_content_hashes_and_must_be_unique() -> None:
    a = Dataset.from_list(["x", "y", {"input": "z", "target": 1}])
    b = Dataset.from_list(["x", "y", {"input": "z", "target": 1}])
    assert [s.id for s in a] == [s.id for s in b]
    assert len({s.id for s in a}) == 3
    with pytest.raises(EvalError, match="share the id"):
        Dataset.from_list(["x", "x"])
    with pytest.raises(EvalError, match="split='dev' is not one of"):
        Sample("q", split="dev")


def test_dataset_errors_name_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"input": "ok"}\n{"question": "no input field"}\n')
    with pytest.raises(EvalError, match=r"bad.jsonl:2: no 'input' field"):
        Dataset.load(p)
    p.write_text('{"input": "ok"}\nnot json\n')
    with pytest.raises(EvalError, match=r"bad.jsonl:2: not valid JSON"):
        Dataset.load(p)
    with pytest.raises(EvalError, match="does not exist"):
        Dataset.load(tmp_path / "missing.jsonl")
    (tmp_path / "d.xlsx").write_text("")
    with pytest.raises(EvalError, match="unknown format 'xlsx'"):
        Dataset.load(tmp_path / "d.xlsx")


def test_assign_splits_is_deterministic_and_stable_under_additions() -> None:
    base = Dataset.from_list([Sample(i, id=f"c{i}") for i in range(200)])
    s1 = base.assign_splits(val=0.2, test=0.2)
    s2 = Dataset.from_list(list(base) + [Sample(999, id="new")]).assign_splits(val=0.2, test=0.2)
    assert [s.split for s in s1] == [s.split for s in s2][:200]
    counts = {sp: len(s1.split(sp)) for sp in ("train", "val", "test")}
    assert 90 < counts["train"] < 150 and 20 < counts["val"] < 60 and 20 < counts["test"] < 60


# ---- scorers -------------------------------------------------------------------------------------


def _score(scorer, output, target, **kw) -> Score:  # type: ignore[no-untyped-def]
    result = scorer(output, Sample("input", target, **kw))
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def test_exact_includes_regex() -> None:
    assert _score(scorers.exact(), " Paris\n", "Paris").passed
    assert not _score(scorers.exact(), "paris", "Paris").passed
    assert _score(scorers.exact(ignore_case=True), "paris", "Paris").passed
    assert _score(scorers.exact(), "Lyon", ["Paris", "Lyon"]).passed
    bad = _score(scorers.exact(), "Rome", "Paris")
    assert bad.value == 0.0 and "'Rome' != 'Paris'" in (bad.explanation or "")
    assert _score(scorers.includes(), "The capital is PARIS.", "paris").passed
    assert not _score(scorers.includes(ignore_case=False), "The capital is PARIS.", "paris").passed
    assert _score(scorers.regex(r"ANSWER: (\d+)"), "think... ANSWER: 3 no wait ANSWER: 42", "42").passed
    assert not _score(scorers.regex(r"ANSWER: (\d+)"), "ANSWER: 41", "42").passed
    assert _score(scorers.regex(r"^\d{3}-\d{4}$"), "555-1234", None).passed
    assert _score(scorers.regex(), "order #A-123 shipped", r"#A-\d+").passed
    with pytest.raises(EvalError, match="invalid pattern"):
        scorers.regex("(")


def test_numeric_with_tolerance() -> None:
    s = scorers.numeric(abs_tol=0.01)
    assert _score(s, "The total is 1,234.005 dollars", "1234").passed
    assert _score(s, "The total is 1,234.005 dollars", 1234.0).passed
    assert not _score(s, "The total is 1,234.005 dollars", "1234.02").passed
    assert _score(s, "first 7, then -2.5e1", -25).passed  # the last number counts
    assert _score(scorers.numeric(rel_tol=0.05), "about 104", 100).passed
    assert not _score(scorers.numeric(rel_tol=0.01), "about 104", 100).passed
    assert _score(scorers.numeric(), 3, "3").passed
    none = _score(scorers.numeric(), "no digits here", "3")
    assert not none.passed and "no number" in (none.explanation or "")
    with pytest.raises(EvalError, match="not a number"):
        _score(scorers.numeric(), "3", "three")


def test_json_match_whole_and_subset() -> None:
    target = {"name": "Ada", "age": 36, "tags": ["math"]}
    assert _score(scorers.json_match(), 'Here:\n```json\n{"age": 36.0, "name": "Ada", "tags": ["math"]}\n```', target).passed
    assert not _score(scorers.json_match(), '{"name": "Ada"}', target).passed
    partial = _score(scorers.json_match(subset=True), 'Sure! {"name": "Ada", "age": 37, "tags": ["math"], "x": 1}', target)
    assert not partial.passed and partial.value == pytest.approx(2 / 3)
    assert partial.metadata["mismatched"] == ["age"] and "age (got 37, want 36)" in (partial.explanation or "")
    assert _score(scorers.json_match(keys=["name"]), '{"name": "Ada", "age": 1}', json.dumps(target)).passed
    assert not _score(scorers.json_match(), "not json at all", target).passed


def test_python_scorer_fills_parameters_by_name() -> None:
    def starts(output: str, target: str) -> bool:
        return output.startswith(target)

    s = scorers.python(starts)
    assert s.name == "starts"
    assert _score(s, "Paris, France", "Paris").passed
    meta = scorers.python(lambda output, metadata: Score(0.5, explanation=str(metadata["k"])))
    got = _score(meta, "x", None, metadata={"k": 7})
    assert got.value == 0.5 and not got.passed and got.explanation == "7"

    async def length(output: str, sample: Sample) -> float:
        return 1.0 if len(output) == sample.target else 0.0

    assert _score(scorers.python(length), "abc", 3).passed
    with pytest.raises(EvalError, match="unknown parameters"):
        scorers.python(lambda output, expected: True)


def test_score_validation_and_aggregates() -> None:
    assert Score(True).value == 1.0 and Score(0.99).passed is False and Score(0.5, passed=True).passed
    with pytest.raises(EvalError, match="finite"):
        Score(float("nan"))
    with pytest.raises(EvalError, match="number or bool"):
        Score("yes")  # type: ignore[arg-type]
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25) and pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert stderr([1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.5 / 4 ** 0.5 * (4 / 3) ** 0.5)
    assert stderr([1.0]) == 0.0


# ---- running tasks -------------------------------------------------------------------------------


@tracekit.trace(kind="agent")
def calc(expression: str) -> str:
    if expression == "boom":
        raise ValueError("cannot parse 'boom'")
    a, op, b = expression.split()
    with tracekit.span("compute", kind="tool") as s:
        s.set_input({"a": a, "op": op, "b": b})
        value = {"+": int(a) + int(b), "*": int(a) * int(b)}[op]
    return str(value)


CASES = [
    Sample("1 + 1", "2", id="add"),
    Sample("2 * 3", "6", id="mul", split="val"),
    Sample("2 + 2", "5", id="wrong"),
    Sample("boom", "0", id="crash", split="test"),
]


def test_run_rows_and_trace_links_in_eval_results(home: Path) -> None:
    task = Task(CASES, solver=calc, scorers=[scorers.exact(), scorers.numeric()], name="calc")
    report = run_eval(task)
    assert report.status == "finished"
    rows = {r["case_id"]: r for r in report.rows}
    assert set(rows) == {"add", "mul", "wrong", "crash"}
    assert rows["add"]["passed"] and rows["add"]["score"] == 1.0 and rows["add"]["status"] == "ok"
    assert not rows["wrong"]["passed"] and rows["wrong"]["explanation"] == "'4' != '5'"
    crash = rows["crash"]
    assert crash["status"] == "error" and crash["score"] == 0.0 and not crash["passed"]
    assert crash["error"] == "ValueError: cannot parse 'boom'" and "raise ValueError" in crash["traceback"]
    assert report.metrics["accuracy"] == 0.5 and report.metrics["errors"] == 1.0
    assert report.metrics["exact.mean"] == 0.5 and report.metrics["numeric.accuracy"] == 0.5
    assert report.metrics["train.accuracy"] == 0.5 and report.metrics["val.accuracy"] == 1.0
    assert report.metrics["test.accuracy"] == 0.0 and report.metrics["train.cases"] == 2

    stored = tracekit.query(
        f"SELECT case_id, epoch, split, passed, status, trace_id, json_extract_string(output, '$') AS out "
        f"FROM eval_results WHERE run_id = '{report.run_id}' ORDER BY case_id").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in stored] == [
        ("add", 1, "train", True, "ok"), ("crash", 1, "test", False, "error"),
        ("mul", 1, "val", True, "ok"), ("wrong", 1, "train", False, "ok")]
    assert len({r[5] for r in stored}) == 4  # one trace per case
    # every case's trace: a root span of kind eval with the agent's spans (and the scorers') below it
    tree = tracekit.query(f"""
        SELECT r.case_id, s.name, s.kind, s.parent_span_id IS NULL AS is_root, s.status
        FROM eval_results r JOIN spans s USING (trace_id)
        WHERE r.run_id = '{report.run_id}' ORDER BY r.case_id, s.start_time""").fetchall()
    by_case: dict[str, list[tuple[str, str, bool, str]]] = {}
    for cid, name, kind, is_root, status in tree:
        by_case.setdefault(cid, []).append((name, kind, is_root, status))
    assert by_case["add"][0] == ("eval/calc", "eval", True, "ok")
    assert [(n, k) for n, k, root, _ in by_case["add"] if not root] == [
        ("calc", "agent"), ("compute", "tool"), ("score/exact", "eval"), ("score/numeric", "eval")]
    assert by_case["crash"][0][3] == "error" and ("calc", "agent", False, "error") in by_case["crash"]
    attrs = json.loads(tracekit.query(
        f"SELECT attributes FROM spans WHERE trace_id = '{rows['wrong']['trace_id']}' AND parent_span_id IS NULL").fetchall()[0][0])
    assert attrs["tracekit.eval.run_id"] == report.run_id and attrs["tracekit.eval.case_id"] == "wrong"
    assert attrs["tracekit.eval.passed"] is False
    runs = tracekit.query(f"SELECT event, samples, epochs FROM eval_runs WHERE run_id = '{report.run_id}' ORDER BY time").fetchall()
    assert runs == [("started", 4, 1), ("finished", 4, 1)]


def test_splits_limit_and_epochs_with_pass_at_k(home: Path) -> None:
    flaky_calls: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(x: str) -> str:
        with lock:
            flaky_calls[x] = flaky_calls.get(x, 0) + 1
            n = flaky_calls[x]
        return "ok" if x == "always" or (x == "half" and n % 2 == 0) else "no"

    task = Task([Sample("always", "ok", id="a"), Sample("half", "ok", id="h"), Sample("never", "ok", id="n"),
                 Sample("held-out", "ok", id="t", split="test")], solver=flaky, scorers=[scorers.exact()], epochs=4)
    report = run_eval(task, splits=["train"], limit=3)
    assert {r["case_id"] for r in report.rows} == {"a", "h", "n"} and len(report.rows) == 12
    m = report.metrics
    assert m["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["pass_at_1"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["pass_at_4"] == pytest.approx(2 / 3)
    assert "held-out" not in flaky_calls
    with pytest.raises(EvalError, match="no samples selected"):
        run_eval(task, splits=["val"])


def test_concurrency_limit_is_respected(home: Path) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    async def slow(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        await asyncio.sleep(0.05)
        with lock:
            active -= 1
        return x

    task = Task([Sample(i, i) for i in range(12)], solver=slow, scorers=[scorers.numeric()])
    t0 = time.monotonic()
    report = run_eval(task, concurrency=3)
    assert report.metrics["accuracy"] == 1.0
    assert peak == 3
    assert time.monotonic() - t0 >= 4 * 0.05


def test_time_limit_scores_a_timeout_for_sync_and_async_solvers(home: Path) -> None:
    def sync_solver(x: float) -> str:
        time.sleep(x)
        return "done"

    async def async_solver(x: float) -> str:
        await asyncio.sleep(x)
        return "done"

    for solver in (sync_solver, async_solver):
        task = Task([Sample(0.0, "done", id="fast"), Sample(5.0, "done", id="slow")], solver=solver,
                    scorers=[scorers.exact()], time_limit=0.3, name="limits")
        t0 = time.monotonic()
        report = run_eval(task)
        assert time.monotonic() - t0 < 4.0
        rows = {r["case_id"]: r for r in report.rows}
        assert rows["fast"]["passed"]
        assert rows["slow"]["status"] == "timeout" and not rows["slow"]["passed"]
        assert rows["slow"]["error"] == "TimeoutError: the case exceeded its time limit of 0.3s"
        assert rows["slow"]["attempts"] == 1  # a timeout is not retried
        assert report.metrics["timeouts"] == 1.0


def test_transient_errors_are_retried_wrong_answers_and_bugs_are_not(home: Path) -> None:
    calls: dict[str, int] = {}

    def solver(x: str) -> str:
        calls[x] = calls.get(x, 0) + 1
        if x == "rate-limited" and calls[x] < 3:
            raise TransientError("429 rate limited")
        if x == "connection" and calls[x] < 2:
            raise ConnectionResetError("peer reset")
        if x == "always-transient":
            raise TransientError("still down")
        if x == "bug":
            raise KeyError("missing")
        return "answer"

    cases = [Sample(x, "answer", id=x) for x in ("rate-limited", "connection", "always-transient", "bug")]
    cases.append(Sample("wrong", "other", id="wrong"))
    task = Task(cases, solver=solver, scorers=[scorers.exact()], retries=2, retry_backoff_s=0.01)
    rows = {r["case_id"]: r for r in run_eval(task).rows}
    assert rows["rate-limited"]["passed"] and rows["rate-limited"]["attempts"] == 3
    assert rows["connection"]["passed"] and rows["connection"]["attempts"] == 2
    assert rows["always-transient"]["status"] == "error" and rows["always-transient"]["attempts"] == 3
    assert rows["always-transient"]["error"] == "TransientError: still down"
    assert rows["bug"]["attempts"] == 1 and rows["bug"]["error"] == "KeyError: 'missing'"
    assert rows["wrong"]["attempts"] == 1 and calls["wrong"] == 1 and rows["wrong"]["status"] == "ok"
    retries = tracekit.query(
        f"SELECT count(*) FROM spans, unnest(events) AS t(e) WHERE trace_id = '{rows['rate-limited']['trace_id']}' "
        "AND e.name = 'tracekit.eval.retry'").fetchall()[0][0]
    assert retries == 2


def test_a_crashing_scorer_is_a_recorded_error_not_a_gap(home: Path) -> None:
    def picky(output: str, sample: Sample) -> Score:
        if sample.id == "b":
            raise RuntimeError("scorer bug")
        return Score(1.0)

    report = run_eval(Task([Sample("x", id="a"), Sample("y", id="b")], solver=str.upper, scorers=[picky]))
    rows = {r["case_id"]: r for r in report.rows}
    assert rows["a"]["passed"]
    assert rows["b"]["status"] == "error" and rows["b"]["error"] == "scorer picky: RuntimeError: scorer bug"
    assert json.loads(rows["b"]["output"]) == "Y"  # the output is kept
    assert report.metrics["accuracy"] == 0.5


def test_solver_receiving_the_whole_sample_and_bad_tasks(home: Path) -> None:
    def solver(sample: Sample) -> str:
        return f"{sample.input}:{sample.metadata['k']}"

    report = run_eval(Task([Sample("q", "q:1", metadata={"k": 1})], solver=solver, scorers=[scorers.exact()]))
    assert report.metrics["accuracy"] == 1.0
    with pytest.raises(EvalError, match="at least one scorer"):
        Task(["x"], solver=str, scorers=[])
    with pytest.raises(EvalError, match="two scorers are named 'exact'"):
        Task(["x"], solver=str, scorers=[scorers.exact(), scorers.exact()])
    with pytest.raises(EvalError, match="solver must be a callable"):
        Task(["x"], solver=None, scorers=[scorers.exact()])
    with pytest.raises(EvalError, match="epochs must be"):
        Task(["x"], solver=str, scorers=[scorers.exact()], epochs=0)


def test_resume_runs_only_the_missing_cases(home: Path) -> None:
    calls: list[str] = []
    release = threading.Event()

    async def solver(x: str) -> str:
        calls.append(x)
        if x.startswith("slow") and not release.is_set():
            await asyncio.sleep(3600)  # interrupted below
        return x

    task = Task([Sample(f"fast{i}", f"fast{i}", id=f"f{i}") for i in range(6)]
                + [Sample("slow0", "slow0", id="s0"), Sample("slow1", "slow1", id="s1")],
                solver=solver, scorers=[scorers.exact()], concurrency=8, name="resumable")
    started: dict[str, str] = {}

    async def interrupted() -> None:
        from tracekit.evals import run_eval_async

        job = asyncio.ensure_future(run_eval_async(task, on_start=lambda rid, n, done: started.setdefault("id", rid)))
        while calls.count("slow0") + calls.count("slow1") < 2 or len(calls) < 8:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(interrupted())
    run_id = started["id"]
    events = tracekit.query(f"SELECT event FROM eval_runs WHERE run_id = '{run_id}' ORDER BY time").fetchall()
    assert [e[0] for e in events] == ["started", "interrupted"]
    kept = tracekit.query(f"SELECT count(*) FROM eval_results WHERE run_id = '{run_id}'").fetchall()[0][0]
    assert kept == 6

    calls.clear()
    release.set()
    report = run_eval(task, resume=run_id[:12])
    assert sorted(calls) == ["slow0", "slow1"]  # finished cases were not redone
    assert report.run_id == run_id and report.skipped == 6 and report.metrics["accuracy"] == 1.0
    assert len(report.rows) == 8
    rows = tracekit.query(f"SELECT case_id, count(*) FROM eval_results WHERE run_id = '{run_id}' GROUP BY 1").fetchall()
    assert len(rows) == 8 and all(n == 1 for _, n in rows)
    events = tracekit.query(f"SELECT event FROM eval_runs WHERE run_id = '{run_id}' ORDER BY time").fetchall()
    assert [e[0] for e in events] == ["started", "interrupted", "resumed", "finished"]
    with pytest.raises(EvalError, match="was started with epochs=1"):
        run_eval(task, resume=run_id, epochs=2)
    with pytest.raises(EvalError, match="no eval run 'nope'"):
        run_eval(task, resume="nope")


def test_compare_reports_regressions_fixes_and_paired_delta(home: Path) -> None:
    answers = {"c1": "1", "c2": "2", "c3": "3", "c4": "x", "c5": "5"}
    task = Task([Sample(k, str(i + 1), id=k) for i, k in enumerate(answers)], solver=lambda k: answers[k],
                scorers=[scorers.exact()], name="cmp")
    a = run_eval(task)
    answers.update({"c2": "wrong", "c4": "4"})
    answers["c5"] = "five"
    b = run_eval(task)
    c = compare(a.run_id, b.run_id)
    assert [x.case_id for x in c.regressions] == ["c2", "c5"]
    assert [x.case_id for x in c.fixes] == ["c4"]
    assert c.regressions[0].explanation_b == "'wrong' != '2'" and c.regressions[0].trace_b
    assert c.paired == 5 and c.a["accuracy"] == 0.8 and c.b["accuracy"] == 0.6
    assert c.delta["accuracy"] == pytest.approx(-0.2)
    assert c.delta_stderr["accuracy"] == pytest.approx(stderr([0, -1, 0, 1, -1]))
    text = c.render()
    assert "regressions: 2  fixes: 1" in text and "c2 [train] pass 1.00->0.00" in text
    assert json.loads(json.dumps(c.to_dict()))["z"]["accuracy"] < 0


def test_public_api_and_light_import() -> None:
    import subprocess
    import sys

    import tracekit.evals as ev

    assert ev.__all__ == ["CommandFailed", "Comparison", "Dataset", "EvalReport", "SPLITS", "Sample", "Score", "Scorer",
                          "Task", "TransientError", "accuracy", "compare", "is_transient",
                          "load_task", "mean", "pass_at_k", "run_eval", "run_eval_async", "sandboxed", "scorers",
                          "stderr", "task"]
    code = "import sys, tracekit.evals; print(sorted(m for m in ('duckdb', 'pyarrow', 'anthropic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
