"""Where run folders go (under the store, the newest kept, a running one never deleted, never inside their own
copy) and what `tracekit sandbox run` exits with when no metric was asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracekit import SandboxError
from tracekit._cli.main import main
from tracekit.sandbox import RunSpec, run
from tracekit.sandbox._rundirs import KEEP_RUNS, hold, let_go, prune, runs_folder
from tracekit.sandbox._workspace import prepare


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


def test_sandbox_run_without_metric_succeeds_on_exit_0_and_shows_the_status(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sandbox", "run", "--workspace", str(tmp_path), "--home", str(tmp_path / "h"), "--budget", "30"]
    code, out = _cli([*base, "--", "echo", "hi"], capsys)
    assert code == 0 and "no_metric" in out and "exit=0" in out and "required only with --metric" in out
    code, out = _cli([*base, "--json", "--", "echo", "hi"], capsys)
    assert code == 0 and json.loads(out)["status"] == "no_metric"
    code, out = _cli([*base, "--", "sh", "-c", "exit 3"], capsys)
    assert code == 1 and "crash" in out
    code, out = _cli([*base, "--metric", "m", "--", "echo", "hi"], capsys)  # asked for: the metric rules apply
    assert code == 1 and "error: metric 'm' was not reported" in out
    code, out = _cli([*base, "--metric", "m", "--", "echo", "METRIC m=2"], capsys)
    assert code == 0 and "m=2" in out


def test_sandbox_run_from_a_folder_whose_store_is_dot_tracekit_keeps_its_run_folder_there(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".tracekit").mkdir(parents=True)
    (project / "a.py").write_text("print('hi')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    proc = subprocess.run([sys.executable, "-m", "tracekit", "sandbox", "run", "--json", "--", "echo", "hi"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    run_dir = Path(result["run_dir"])
    assert run_dir == project / ".tracekit" / "sandbox" / "runs" / result["run_id"]
    assert (run_dir / "run.json").is_file() and (run_dir / "stdout.log").read_text() == "hi\n"
    assert not (Path(result["workspace"]) / ".tracekit").exists()  # the store is never copied into the run


def test_a_run_folder_inside_the_workspace_is_refused_unless_the_copy_skips_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("x")
    excluded = (".git", ".tracekit")
    folders = prepare(ws / ".tracekit" / "sandbox" / "runs" / "r1", ws, excluded, isolated=False)
    assert (folders.workspace / "f.txt").exists() and not (folders.workspace / ".tracekit").exists()
    with pytest.raises(SandboxError, match="inside the workspace .* copied into itself"):
        prepare(ws / "runs" / "r2", ws, excluded, isolated=False)
    assert not (ws / "runs").exists()  # refused before anything was created in the user's folder


def test_a_store_inside_the_workspace_that_the_copy_would_take_sends_run_folders_elsewhere(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    res = run(RunSpec(["true"], workspace=ws, trace_home=ws / "traces", budget_s=30))
    assert not res.run_dir.is_relative_to(ws) and res.status == "no_metric" and res.exit_code == 0


def _fake_runs(base: Path, n: int) -> list[str]:
    names = [f"2020010{1 + i // 10}T0000{i % 10:02d}-{i:08x}" for i in range(n)]
    for name in names:
        (base / name / "workspace").mkdir(parents=True)
        (base / name / "run.json").write_text("{}")
    return names


def test_pruning_keeps_the_newest_and_never_a_running_folder_or_anything_planted(tmp_path: Path) -> None:
    base = tmp_path / "runs"
    names = _fake_runs(base, 6)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (base / "20000101T000000-0000dead").symlink_to(victim)  # named like a run, a link: not followed, not removed
    (base / "20000101T000000-0000beef").write_text("a file named like a run")
    (base / "notes").mkdir()  # not a run's name
    (base / names[2] / "workspace" / "escape").symlink_to(victim)  # a link a run left in its copy
    running = hold(base / names[0])  # the oldest, still going
    try:
        removed = prune(base, keep=2)
    finally:
        let_go(running)
    assert sorted(removed) == sorted(names[1:4])
    assert sorted(p.name for p in base.iterdir()) == sorted([names[0], *names[4:], "20000101T000000-0000dead",
                                                             "20000101T000000-0000beef", "notes"])
    assert (victim / "keep.txt").read_text() == "mine"


def test_default_run_folders_go_under_the_store_and_keep_the_newest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = runs_folder(home.resolve())
    base.mkdir(parents=True)
    _fake_runs(base, KEEP_RUNS + 5)
    ws = tmp_path / "ws"
    ws.mkdir()
    res = run(RunSpec(["true"], workspace=ws, trace_home=home, budget_s=30))
    assert res.run_dir == base / res.run_id and (res.run_dir / "run.json").is_file()
    kept = sorted(p.name for p in base.iterdir())
    assert len(kept) == KEEP_RUNS and kept[-1] == res.run_id  # run ids sort by start time
