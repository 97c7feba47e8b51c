"""`tracekit sandbox run|check`, spec validation errors, round trips, and the public API surface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tracekit.sandbox as sandbox
from tracekit import SandboxError
from tracekit._cli.main import main
from tracekit._cli.sandbox import parse_mb
from tracekit.sandbox import RunResult, RunSpec, run


def test_public_api_names() -> None:
    assert sandbox.__all__ == sorted([
        "BACKENDS", "CapturedOutput", "CheckReport", "DEFAULT_ENV_ALLOWLIST", "Executor", "LocalExecutor",
        "RayExecutor", "RunHandle", "RunResult", "RunSpec", "STATUSES", "check", "run",
    ])
    assert sandbox.STATUSES == ("ok", "crash", "timeout", "oom", "output_limit", "no_metric", "killed")


def test_cli_run_prints_status_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('val_bpb: 0.97')\n")
    args = ["sandbox", "run", "--budget", "20", "--memory", "256M", "--metric", "val_bpb", "--workspace", str(ws),
            "--home", str(tmp_path / "home"), "--run-dir", str(tmp_path / "r1"), "--", "python", "train.py"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "val_bpb=0.97" in out
    args = ["sandbox", "run", "--json", "--workspace", str(ws), "--home", str(tmp_path / "home"),
            "--run-dir", str(tmp_path / "r2"), "-e", "WHO=cli", "--", "sh", "-c", "echo $WHO; exit 3"]
    assert main(args) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "crash" and data["exit_code"] == 3 and data["stdout"]["head"] == "cli\n"
    assert data["limits"]["memory_mb"] == 2048


def test_cli_rejects_bad_sizes_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "run", "--memory", "lots", "--", "true"]) == 2
    assert "expected a size like 512M" in capsys.readouterr().err
    assert main(["sandbox", "run", "-e", "NOEQUALS", "--", "true"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert parse_mb("2G", "--memory") == 2048 and parse_mb("512m", "x") == 512 and parse_mb("1.5GiB", "x") == 1536
    assert parse_mb("none", "x") is None and parse_mb("300", "x") == 300


def test_cli_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "check", "--json", "--no-probe"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backends"]["local"] is None and data["probe_run"] is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"command": []}, "non-empty list"),
    ({"command": "  "}, "empty string"),
    ({"command": ["x"], "budget_s": 0}, "budget_s=0"),
    ({"command": ["x"], "budget_s": float("nan")}, "budget_s=nan"),
    ({"command": ["x"], "memory_mb": 4}, "memory_mb=4"),
    ({"command": ["x"], "backend": "docker"}, "backend='docker'"),
    ({"command": ["x"], "workspace": Path("/nonexistent-xyz")}, "is not a directory"),
    ({"command": ["x"], "metric": "bad name!"}, "metric='bad name!'"),
    ({"command": ["x"], "env": {"A=B": "1"}}, "bad variable name"),
    ({"command": ["x"], "ro_paths": ["relative/path"]}, "absolute path"),
    ({"command": ["x"], "traceparent": "nope"}, "W3C traceparent"),
])
def test_spec_validation_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RunSpec(**kwargs).validate()  # type: ignore[arg-type]


def test_reserved_env_and_nonempty_run_dir_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="TRACEKIT_RESULT"):
        run(RunSpec(["true"], env={"TRACEKIT_RESULT": "/x"}, run_dir=tmp_path / "a", trace_home=tmp_path / "h"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("data")
    with pytest.raises(SandboxError, match="not empty"):
        run(RunSpec(["true"], run_dir=tmp_path / "b", trace_home=tmp_path / "h"))
    assert (tmp_path / "b" / "keep.txt").read_text() == "data"


def test_spec_and_result_round_trip(tmp_path: Path) -> None:
    s = RunSpec(["python", "t.py"], workspace=tmp_path, env={"A": "1"}, ro_paths=[str(tmp_path)], metric="m")
    assert RunSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == RunSpec(
        ["python", "t.py"], workspace=tmp_path, env={"A": "1"}, ro_paths=(str(tmp_path),), metric="m")
    with pytest.raises(SandboxError, match="unknown RunSpec fields"):
        RunSpec.from_dict({"command": ["x"], "bogus": 1})
    res = run(RunSpec(["sh", "-c", "echo METRIC m=2"], metric="m", run_dir=tmp_path / "r", trace_home=tmp_path / "h"))
    again = RunResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again == res and again.value == 2.0


def test_local_backend_says_loudly_it_is_not_isolation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run(RunSpec(["sh", "-c", "echo METRIC a=1"], backend="local", run_dir=tmp_path / "r", trace_home=tmp_path / "h"))
    assert res.status == "ok" and res.backend == "local" and res.limits["isolation"] == "none"
    assert "is NOT isolation" in capsys.readouterr().err
