"""SIGKILL the loop at any point, start it again: nothing lost, nothing duplicated, git consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

import tracekit
from tracekit.optimizer import Ledger

from tests._support.optimizer import check_git, git, git_dir, make_target, optimize


def _cli(root: Path, iterations: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEKIT_HOME", "TRACEPARENT")}
    return subprocess.Popen([sys.executable, "-m", "tracekit", "optimize", str(root), "-n", str(iterations), "--plain",
                             "--proposer", "search"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _leftovers(root: Path) -> list[int]:
    """Processes still running a candidate of this target (the sandbox must not leave any behind)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"train.py" in cmd and str(root) in cwd:
            out.append(int(pid))
    return out


def _consistent(root: Path, iterations: int) -> list[dict]:
    home = root / ".tracekit"
    led = Ledger(home, "main")
    rows = led.rows
    assert not led.pending(), "every intent has its outcome"
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    assert sum(r["status"] == "baseline" for r in rows) == 1 and len(rows) == iterations + 1
    n = tracekit.query("SELECT count(*), count(DISTINCT experiment_id) FROM experiments", home=home).fetchall()
    assert n == [(len(rows), len(rows))], "one Parquet row per experiment"
    hashes = [r["content_hash"] for r in rows]
    assert len(hashes) == len(set(hashes))
    check_git(home, rows)
    tsv = (home / "optimizer" / "main" / "results.tsv").read_text().splitlines()
    assert len(tsv) == len(rows) + 1
    assert not list((home / "optimizer" / "main" / "work").glob("*")), "no workspace left behind"
    return rows


def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl", extra='[target.env]\nBOWL_SLEEP = "0.5"')
    rng = random.Random(7)
    kills = 0
    for delay in [rng.uniform(0.8, 4.0) for _ in range(4)]:
        proc = _cli(root, 10)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        deadline = time.monotonic() + 5
        while _leftovers(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _leftovers(root), "the candidate died with the loop"
    assert kills >= 3
    proc = _cli(root, 10)
    out = proc.communicate(timeout=240)[0].decode()
    assert proc.returncode == 0, out
    rows = _consistent(root, 10)
    assert rows[-1]["metric"] is not None and "stopped: 10 experiments done" in out


def _outcome_file(home: Path, experiment_id: str) -> Path:
    for f in (home / "experiments").glob("*.parquet"):
        if experiment_id in pq.read_table(f, columns=["experiment_id"]).column(0).to_pylist():
            return f
    raise AssertionError(f"no outcome file for {experiment_id}")


def test_kill_between_branch_move_and_outcome_is_decided_again_identically(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    s = optimize(root, iterations=3, proposer="search")
    home = s.home
    keep = [r for r in s.rows if r["status"] == "keep"][-1]
    head = git(root, "--git-dir", str(git_dir(home)), "rev-parse", "tracekit/main")
    # the state a SIGKILL leaves after the branch moved and before the outcome row: intent + result, no row
    for r in s.rows[keep["seq"]:]:
        _outcome_file(home, r["experiment_id"]).unlink()
    (home / "optimizer" / "main" / "results.tsv").unlink()
    again = optimize(root, iterations=3, proposer="search")
    assert git(root, "--git-dir", str(git_dir(home)), "rev-parse", "tracekit/main") == head  # not moved twice
    redone = next(r for r in again.rows if r["experiment_id"] == keep["experiment_id"])
    for col in ("status", "metric", "candidate_commit", "parent_commit", "diff", "attempt", "improvement"):
        assert redone[col] == keep[col], col
    _consistent(root, 3)


def test_kill_during_a_run_runs_it_again_under_the_same_id(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    s = optimize(root, iterations=2, proposer="search")
    home = s.home
    last = s.rows[-1]
    _outcome_file(home, last["experiment_id"]).unlink()
    (home / "optimizer" / "main" / "experiments" / last["experiment_id"] / "result.json").unlink()
    if last["status"] == "keep":  # the branch had not moved yet when the run was interrupted
        git(root, "--git-dir", str(git_dir(home)), "update-ref", "refs/heads/tracekit/main", last["parent_commit"])
    events: list[tuple[str, dict]] = []
    again = optimize(root, iterations=2, proposer="search", events=events)
    redone = again.rows[-1]
    assert redone["experiment_id"] == last["experiment_id"] and redone["attempt"] == 2
    assert (redone["metric"], redone["diff"], redone["status"]) == (last["metric"], last["diff"], last["status"])
    assert ("resumed", {"experiment_id": last["experiment_id"], "action": "rerun", "attempt": 2}) in events
    _consistent(root, 2)


def test_ctrl_c_finishes_the_run_in_flight_then_stops(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl", extra='[target.env]\nBOWL_SLEEP = "1.5"')
    proc = _cli(root, 10)
    intents = root / ".tracekit" / "optimizer" / "main" / "experiments"
    deadline = time.monotonic() + 60
    while not (intents / "main-0001" / "intent.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # experiment main-0001 is running: it is finished and recorded, then the loop stops
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    assert "stopped: interrupted (Ctrl-C)" in out
    rows = Ledger(root / ".tracekit", "main").rows
    assert [r["experiment_id"] for r in rows] == ["main-0000", "main-0001"] and rows[1]["run_status"] == "ok"
    assert not Ledger(root / ".tracekit", "main").pending()


def test_second_ctrl_c_aborts_the_run_and_the_next_start_runs_it_again(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl", extra='[target.env]\nBOWL_SLEEP = "20"', budget=60)
    proc = _cli(root, 1)
    run_dir = root / ".tracekit" / "optimizer" / "main" / "experiments" / "main-0000"
    deadline = time.monotonic() + 60
    while not (run_dir / "intent.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # abort: the 20 s baseline is cancelled, not waited for
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0 and "stopped: interrupted (Ctrl-C)" in out, out
    led = Ledger(root / ".tracekit", "main")
    assert led.rows == [] and [p.intent["experiment_id"] for p in led.pending()] == ["main-0000"]
    assert not _leftovers(root)
