"""`tracekit eval run|list|show|compare`, in process and as real subprocesses (Ctrl-C, then --resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracekit._cli.main import main

TASK_FILE = '''
import os, time
from pathlib import Path
import tracekit
from tracekit.evals import Sample, Task, scorers, task

LOG = Path(__file__).with_name("calls.log")

@tracekit.trace(kind="agent")
def square(x: int) -> int:
    with LOG.open("a") as f:
        f.write(f"{x}\\n")
    if x >= 100 and not os.environ.get("RELEASE"):
        Path(__file__).with_name(f"started-{x}").touch()
        time.sleep(120)
    return x * x + (1 if str(x) in os.environ.get("WRONG", "").split(",") else 0)

CASES = [Sample(i, i * i, id=f"n{i}", split="val" if i % 3 == 0 else "train") for i in range(1, 7)]
squares = Task(CASES, solver=square, scorers=[scorers.numeric()])

@task
def with_slow_cases() -> Task:
    return Task(CASES + [Sample(100, 10000, id="slow100"), Sample(101, 10201, id="slow101")],
                solver=square, scorers=[scorers.numeric()], concurrency=8)
'''


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    p = tmp_path / "suite" / "evals_suite.py"
    p.parent.mkdir()
    p.write_text(textwrap.dedent(TASK_FILE))
    return p


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # the error console wraps long lines


def test_eval_run_list_show_compare(home: Path, task_file: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _run(["eval", "run", f"{task_file}:squares", "--home", str(home)], capsys)
    assert code == 0, err
    assert "accuracy: 1" in out and "status: finished" in out and "cases: 6" in out
    run_a = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("run_id: "))

    monkeypatch.setenv("WRONG", "2,4")
    code, out, _ = _run(["eval", "run", f"{task_file}:squares", "--split", "train", "--epochs", "2", "-f", "json",
                         "--home", str(home)], capsys)
    assert code == 0
    doc = json.loads(out)
    run_b = doc["run_id"]
    assert doc["metrics"]["cases"] == 4 and doc["metrics"]["accuracy"] == 0.5 and doc["metrics"]["pass_at_2"] == 0.5
    assert doc["settings"]["splits"] == ["train"] and doc["settings"]["epochs"] == 2

    code, out, _ = _run(["eval", "list", "-f", "json", "--home", str(home)], capsys)
    runs = json.loads(out)
    assert [r["run_id"] for r in runs] == [run_b, run_a] and runs[0]["state"] == "finished" and runs[0]["accuracy"] == 0.5

    code, out, _ = _run(["eval", "show", run_b[:-2], "--failed", "-f", "json", "--home", str(home)], capsys)
    failed = json.loads(out)
    assert sorted((r["case_id"], r["epoch"]) for r in failed) == [("n2", 1), ("n2", 2), ("n4", 1), ("n4", 2)]
    assert all(r["trace_id"] and r["explanation"].startswith("5 vs 4") or r["case_id"] == "n4" for r in failed)
    code, out, _ = _run(["eval", "show", "latest", "--home", str(home)], capsys)
    assert code == 0 and "n2" in out and "squares" in out

    code, out, _ = _run(["eval", "compare", run_a, run_b, "--home", str(home)], capsys)
    assert code == 0
    assert "paired cases: 4  only in A: 2  only in B: 0" in out
    assert "accuracy: 1.0000 -> 0.5000  delta -0.5000 ± 0.2887" in out
    assert "regressions: 2  fixes: 0" in out and "n2 [train] pass 1.00->0.00" in out
    code, out, _ = _run(["eval", "compare", run_a, run_b, "-f", "json", "--home", str(home)], capsys)
    assert [c["case_id"] for c in json.loads(out)["regressions"]] == ["n2", "n4"]

    code, _, _ = _run(["eval", "run", f"{task_file}:squares", "--fail-under", "0.9", "--home", str(home)], capsys)
    assert code == 1


def test_eval_cli_errors_are_one_clear_line(home: Path, task_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["eval", "run", str(task_file), "--home", str(home)], capsys)
    assert code == 2 and "defines several tasks (squares, with_slow_cases)" in err and "Traceback" not in err
    code, _, err = _run(["eval", "run", f"{task_file}:nope", "--home", str(home)], capsys)
    assert code == 2 and "no task named 'nope' (tasks in the file: squares, with_slow_cases)" in err
    code, _, err = _run(["eval", "run", str(tmp_path / "missing.py"), "--home", str(home)], capsys)
    assert code == 2 and "is not a Python file" in err
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    code, _, err = _run(["eval", "run", str(broken), "--home", str(home)], capsys)
    assert code == 2 and "importing it failed: ModuleNotFoundError" in err
    code, _, err = _run(["eval", "run", f"{task_file}:squares", "--split", "dev", "--home", str(home)], capsys)
    assert code == 2 and "split 'dev' is not one of train, val, test" in err
    code, _, err = _run(["eval", "show", "zzz", "--home", str(home)], capsys)
    assert code == 2 and "no eval run 'zzz'" in err


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tracekit", "eval", "run", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ctrl_c_then_resume_redoes_only_unfinished_cases(home: Path, task_file: Path) -> None:
    env = {**os.environ, "TRACEKIT_HOME": str(home)}
    proc = _cli(f"{task_file}:with_slow_cases", env=env)
    folder = task_file.parent
    deadline = time.monotonic() + 60
    while not ((folder / "started-100").exists() and (folder / "started-101").exists()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow cases never started"
        time.sleep(0.05)
    while len((folder / "calls.log").read_text().split()) < 8:
        time.sleep(0.05)
    time.sleep(0.3)  # the six fast cases finish and are scored
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hint = next(line for line in err.splitlines() if "Resume with:" in line)
    assert f"tracekit eval run {task_file}:with_slow_cases --resume " in hint
    run_id = hint.rsplit(" ", 1)[1]

    (folder / "calls.log").unlink()
    resumed = _cli(f"{task_file}:with_slow_cases", "--resume", run_id, env={**env, "RELEASE": "1"})
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert sorted((folder / "calls.log").read_text().split()) == ["100", "101"]  # the six finished cases were kept
    assert f"resuming {run_id}: 6 case results kept, 2 to run" in err
    assert "accuracy: 1" in out and "cases: 8" in out

    import tracekit

    events = tracekit.query(f"SELECT event FROM eval_runs WHERE run_id = '{run_id}' ORDER BY time").fetchall()
    assert [e[0] for e in events] == ["started", "interrupted", "resumed", "finished"]
    per_case = tracekit.query(f"SELECT case_id, count(*) FROM eval_results WHERE run_id = '{run_id}' GROUP BY 1").fetchall()
    assert len(per_case) == 8 and {n for _, n in per_case} == {1}
