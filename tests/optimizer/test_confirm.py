"""`tracekit optimize confirm`: the reviewed best candidate and the baseline rerun on fresh seeds, a 95% interval,
its verdict stored as JSON, an annotation and one trace; refused while a loop holds the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracekit
from tracekit._cli.main import main
from tracekit._errors import OptimizerError
from tracekit.optimizer import Optimizer, load_target
from tracekit.optimizer._confirm import confirm, t_quantile, welch
from tracekit.optimizer._ledger import Ledger
from tracekit.optimizer._rerun import Rerun, target_for_run
from tracekit.optimizer._review import rebuild_branch, record_decision
from tracekit.optimizer._session import loop_pid

from tests._support.optimizer import BOWL, ScriptedProposer, make_target, optimize, replace_line

# The loop's runs have no TRACEKIT_SEED; confirm's get fresh ones (noise of 0.01). A LUCKY candidate is better
# only without a seed: its gain was real on the loop's seed and is not on any other.
SEEDED = BOWL.replace('''    print(f"val_loss: {loss:.6f}")''', '''    seed = os.environ.get("TRACEKIT_SEED")
    if seed is not None:
        import random

        loss += random.Random(int(seed)).gauss(0, 0.01)
        if globals().get("HUGE"):  # a hostile candidate: values no arithmetic survives, once it is rerun
            loss = 1e308 * (1 if int(seed) % 2 else -1)
    elif globals().get("LUCKY"):
        loss -= 0.5
    print(f"seed: {seed or 'unset'}")
    print(f"run_index: {os.environ.get('TRACEKIT_RUN_INDEX')}")
    print(f"val_loss: {loss:.6f}")''')
MODE_LINE = 'MODE = "a"  # one of "a", "b" or "c"'


def _run_with_two_keeps(tmp_path: Path) -> tuple[Path, Path]:
    root = make_target(tmp_path / "bowl", script=SEEDED, baseline_runs=2)
    s = optimize(root, proposer=ScriptedProposer([
        replace_line(MODE_LINE, MODE_LINE + "\nLUCKY = True", "lucky on the loop's seed"),
        replace_line("LR = 0.1  # learning rate", "LR = 0.4  # learning rate", "a better learning rate"),
    ]), iterations=2)
    assert [r["status"] for r in s.rows] == ["baseline", "baseline", "keep", "keep"]
    return root, root / ".tracekit"


def test_welch_interval_uses_the_t_quantile() -> None:
    for df, table in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (8, 2.3060), (30, 2.0423), (1000, 1.9623)):
        assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)
    imp, low, high, df = welch([1.0, 1.1, 0.9], [0.8, 0.9, 0.7], better=-1)  # lower is better: 0.2 better
    assert imp == pytest.approx(0.2) and df == pytest.approx(4.0)
    assert (low, high) == pytest.approx((0.2 - 2.7764 * (0.02 / 3) ** 0.5, 0.2 + 2.7764 * (0.02 / 3) ** 0.5), abs=1e-4)
    assert welch([2.0, 2.0], [1.5, 1.5], better=-1) == (0.5, 0.5, 0.5, float("inf"))  # deterministic: no width


def test_confirm_separates_a_real_gain_from_a_lucky_one_and_follows_the_review(tmp_path: Path) -> None:
    root, home = _run_with_two_keeps(tmp_path)
    target = target_for_run(root, home, "main")

    lucky = confirm(target, home, "main", runs=3, experiment="main-0002")  # better on the loop's seed only
    assert lucky["candidate"] == "main-0002" and lucky["label"] == "not-confirmed" and not lucky["confirmed"]
    assert lucky["claimed_improvement"] == pytest.approx(0.5, abs=1e-3) and not lucky["claim_in_interval"]
    assert lucky["low"] < 0 < lucky["high"] and abs(lucky["improvement"]) < 0.05

    record_decision(home, "main", "main-0002", "reject", why="better only on the loop's seed", author="ana")
    chain = rebuild_branch(home, "main", Ledger(home, "main").rows)
    real = confirm(target, home, "main", runs=3)  # the incumbent after review: main-0003 rebased onto the baseline
    assert real["candidate"] == "main-0003" and real["candidate_commit"] == chain.head and chain.links[0].rebased
    assert real["label"] == "confirmed" and real["confirmed"]
    assert real["low"] > 0.3 and real["high"] < 0.42 and real["improvement"] == pytest.approx(0.36, abs=0.03)
    assert real["claimed_improvement"] == pytest.approx(0.86, abs=0.01) and not real["claim_in_interval"]

    # every rerun had its own fresh seed and index, and saw them
    seeds = [m["seed"] for m in real["measurements"]]
    assert len(set(seeds)) == 6 and 0 not in seeds and not set(seeds) & {m["seed"] for m in lucky["measurements"]}
    assert [m["arm"] for m in real["measurements"]] == ["baseline", "candidate", "candidate", "baseline", "baseline", "candidate"]
    for m in real["measurements"]:
        out = (Path(m["run_dir"]) / "stdout.log").read_text()
        assert f"seed: {m['seed']}\n" in out and f"run_index: {m['index']}\n" in out

    # stored: the JSON promote reads, an annotation per verdict, and one trace per series
    files = sorted((home / "optimizer" / "main").glob("confirm-*.json"))
    assert len(files) == 2 and json.loads(files[-1].read_text())["candidate"] == "main-0003"
    assert {"candidate", "runs", "improvement", "low", "high"} <= set(json.loads(files[-1].read_text()))
    notes = tracekit.query("SELECT target_id, label, score, source, trace_id FROM annotations WHERE source = 'confirm' "
                           "ORDER BY time", home=home).fetchall()
    assert [(t, label, src) for t, label, _, src, _ in notes] == [("main-0002", "not-confirmed", "confirm"),
                                                                  ("main-0003", "confirmed", "confirm")]
    assert notes[1][2] == pytest.approx(real["improvement"]) and notes[1][4] == real["trace_id"]
    spans = tracekit.query(f"SELECT name, count(*), min(experiment_id), max(experiment_id) FROM spans WHERE trace_id = "
                           f"'{real['trace_id']}' GROUP BY name", home=home).fetchall()
    by_name = {name: (n, lo, hi) for name, n, lo, hi in spans}
    assert by_name["optimizer.confirm"][0] == 1 and by_name["optimizer.run"][0] == 6 and by_name["sandbox.run"][0] == 6
    assert by_name["train"][0] == 6  # the candidate's own spans, under its rerun
    assert {lo for _, lo, _ in by_name.values()} == {real["series_id"]} and real["series_id"].startswith("main-confirm-")
    ledger_ids = {r["experiment_id"] for r in Ledger(home, "main").rows}
    assert real["series_id"] not in ledger_ids  # the proposer's context reads ledger experiments only


def test_confirm_refuses_while_a_loop_holds_the_run_and_the_loop_waits_for_it(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl", baseline_runs=1)
    optimize(root, proposer=ScriptedProposer([replace_line("LR = 0.1  # learning rate", "LR = 0.4  # learning rate")]),
             iterations=1)
    home = root / ".tracekit"
    target = target_for_run(root, home, "main")
    loop = subprocess.Popen([sys.executable, "-m", "tracekit", "optimize", "run", str(root), "-n", "5", "--plain",
                             "--proposer", "command", "--proposer-cmd", "sleep 60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while loop_pid(home / "optimizer" / "main") is None:
            assert loop.poll() is None and time.monotonic() < deadline, "the loop did not start"
            time.sleep(0.1)
        with pytest.raises(OptimizerError, match=rf"a loop \(pid {loop.pid}; or a confirm or holdout\) is working on run 'main'.*optimize stop"):
            confirm(target, home, "main", runs=2)
    finally:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait()
    with Rerun(target, home, "main", "confirm"):  # and while a confirm holds it, no loop starts
        with pytest.raises(OptimizerError, match="already being optimized"):
            Optimizer(load_target(root), iterations=2, proposer="search").run()


def test_confirm_says_what_to_do_with_a_bad_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_target(tmp_path / "bowl", baseline_runs=1)
    home = root / ".tracekit"
    with pytest.raises(OptimizerError, match="no run 'main'"):
        confirm(load_target(root), home, "main")
    optimize(root, proposer=ScriptedProposer([]), iterations=1)  # the baseline only
    target = target_for_run(root, home, "main")
    with pytest.raises(OptimizerError, match="at least 2 runs of each"):
        confirm(target, home, "main", runs=1)
    with pytest.raises(OptimizerError, match="no kept experiment: the baseline is still the best"):
        confirm(target, home, "main", runs=2)
    with pytest.raises(OptimizerError, match="'main-0042' is not a measured candidate of run 'main'"):
        confirm(target, home, "main", runs=2, experiment="main-0042")
    assert main(["optimize", "confirm", str(root)]) == 2
    assert "error: run 'main' has no kept experiment" in capsys.readouterr().err
    assert not list((home / "optimizer" / "main").glob("confirm-*"))  # a refused confirm writes nothing


def test_confirm_judges_metrics_too_large_to_compare_as_not_confirmed(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = make_target(tmp_path / "bowl", script=SEEDED, baseline_runs=1)
    optimize(root, proposer=ScriptedProposer([
        replace_line("LR = 0.1  # learning rate", "LR = 0.4  # learning rate\nHUGE = True", "and then some")]), iterations=1)
    home = root / ".tracekit"
    assert main(["optimize", "confirm", str(root), "--runs", "4", "-f", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] == "not-confirmed" and result["candidate_values"] and result["improvement"] != result["improvement"]
    note = tracekit.query("SELECT label, score FROM annotations WHERE source = 'confirm'", home=home).fetchall()
    assert note == [("not-confirmed", None)]  # no made-up score
