"""The fault suite: each candidate misbehaves one way; each case checks the status and that nothing is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekit.sandbox import run

from tests._support.sandbox import ISOLATED, assert_no_leftovers, marker, needs_isolation, py, spec

ALL_BACKENDS = [*ISOLATED, "local"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_happy_path_reports_metric_from_result_file(tmp_path: Path, backend: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(
        "import json, os, sys\n"
        "print('step 1 loss 2.0')\n"
        "open('model.txt', 'w').write('weights')\n"
        "json.dump({'metrics': {'val_bpb': 0.99, 'steps': 10}}, open(os.environ['TRACEKIT_RESULT'], 'w'))\n"
    )
    m = marker()
    res = run(spec(tmp_path, ["python", "train.py", m], workspace=ws, backend=backend, metric="val_bpb"))
    assert res.status == "ok", res.error
    assert res.metrics == {"val_bpb": 0.99, "steps": 10.0}
    assert res.metric_source == "result_json"
    assert res.value == 0.99
    assert res.exit_code == 0 and res.signal is None and res.error is None
    assert res.changed_files == ["model.txt"]
    assert (res.workspace / "model.txt").read_text() == "weights"
    assert not (ws / "model.txt").exists()  # the source workspace is never touched
    assert "step 1 loss" in res.stdout.text()
    assert res.backend == backend
    assert res.cpu_s is not None and res.cpu_s > 0 and res.peak_memory_mb and res.peak_memory_mb > 0
    json.dumps(res.to_dict())
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "ok"
    assert_no_leftovers(m)


def test_crash_keeps_traceback(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("def f():\n    raise RuntimeError('boom at step 3')\nf()", m)))
    assert res.status == "crash"
    assert res.exit_code == 1
    assert "Traceback" in res.stderr.text() and "RuntimeError: boom at step 3" in res.stderr.tail + res.stderr.head
    assert "boom at step 3" in (res.error or "")
    assert res.metrics == {} and res.value is None
    assert_no_leftovers(m)


def test_metric_then_nonzero_exit_is_a_crash(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("import sys\nprint('METRIC score=0.5')\nsys.exit(3)", m), metric="score"))
    assert res.status == "crash" and res.exit_code == 3
    assert res.metrics == {"score": 0.5}  # reported, but the status decides
    assert res.value is None
    assert_no_leftovers(m)


def test_sleep_past_budget_times_out(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("import time\nprint('METRIC x=1', flush=True)\ntime.sleep(600)", m), budget_s=1.0, grace_s=2.0))
    assert res.status == "timeout"
    assert res.signal == 15  # it died of the SIGTERM, within the grace period
    assert 1.0 <= res.wall_s < 3.0
    assert "1 s budget" in (res.error or "")
    assert_no_leftovers(m)


def test_sigterm_ignored_is_killed_after_grace(tmp_path: Path) -> None:
    m = marker()
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"
    res = run(spec(tmp_path, py(code, m), budget_s=0.5, grace_s=1.0))
    assert res.status == "timeout"
    assert res.signal == 9
    assert 1.5 <= res.wall_s < 4.0
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_double_forked_setsid_daemon_is_killed(tmp_path: Path, backend: str) -> None:
    m = marker()
    code = """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        time.sleep(0.3)
        print('METRIC done=1')
    """
    res = run(spec(tmp_path, py(code, m), backend=backend))
    assert res.status == "ok"
    assert any("leftover" in n for n in res.notes)
    assert_no_leftovers(m)


def test_daemon_escape_with_timeout(tmp_path: Path) -> None:
    m = marker()
    code = """
        import os, signal, time
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        time.sleep(600)
    """
    res = run(spec(tmp_path, py(code, m), budget_s=1.0, grace_s=0.5))
    assert res.status == "timeout"
    assert_no_leftovers(m)


def test_child_holding_the_output_pipe(tmp_path: Path) -> None:
    m = marker()
    code = """
        import subprocess, sys
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]])
        print('METRIC x=2')
    """
    res = run(spec(tmp_path, py(code, m), budget_s=30.0))
    assert res.status == "ok" and res.metrics == {"x": 2.0}
    assert res.wall_s < 10  # returns when the command ends, not when the pipe closes
    assert_no_leftovers(m)


def test_fork_bomb_is_contained(tmp_path: Path) -> None:
    m = marker()
    code = """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    res = run(spec(tmp_path, py(code, m), budget_s=1.5, grace_s=0.5, max_procs=32))
    assert res.status in ("timeout", "crash")
    if res.limits["procs_enforced_by"]:
        assert any("refused" in n for n in res.notes)
    assert_no_leftovers(m, timeout=5)


def test_memory_hog_is_oom(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("x = []\nwhile True:\n    x.append(bytearray(16 << 20))", m), memory_mb=128))
    assert res.status == "oom", (res.error, res.stderr.tail)
    assert "memory limit of 128 MB" in (res.error or "")
    assert_no_leftovers(m)


def test_stdout_flood_hits_output_limit(tmp_path: Path) -> None:
    m = marker()
    cap = 256 * 1024
    res = run(spec(tmp_path, py("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", m), output_bytes=cap))
    assert res.status == "output_limit"
    assert res.stdout.limit_exceeded and res.stdout.truncated
    assert res.stdout.total_bytes > cap
    assert res.stdout.path.stat().st_size <= cap + 64 * 1024 + 200
    assert "[..." in res.stdout.text() and "bytes elided" in res.stdout.text()
    assert_no_leftovers(m)


def test_giant_stderr_line_without_newline(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("import sys\nsys.stderr.write('y' * (8 << 20))\nsys.stderr.flush()\nimport time; time.sleep(60)", m),
                   output_bytes=1 << 20))
    assert res.status == "output_limit"
    assert res.stderr.limit_exceeded and not res.stdout.limit_exceeded
    assert len(res.stderr.head) == 64 * 1024 and set(res.stderr.head) == {"y"}
    assert_no_leftovers(m)


def test_binary_output_is_decoded(tmp_path: Path) -> None:
    m = marker()
    code = "import os, sys\nsys.stdout.buffer.write(os.urandom(200000) + b'\\x00\\xff\\xfe')\nsys.stdout.buffer.write(b'\\nMETRIC acc=0.75\\n')"
    res = run(spec(tmp_path, py(code, m), metric="acc"))
    assert res.status == "ok" and res.metrics == {"acc": 0.75}
    assert res.stdout.total_bytes > 200000
    assert "\ufffd" in res.stdout.text()
    json.dumps(res.to_dict())
    assert_no_leftovers(m)


@needs_isolation
def test_disk_fill_is_capped(tmp_path: Path) -> None:
    m = marker()
    code = """
        import os
        total, n = 0, 0
        try:
            while True:  # many 1 MB files: the per-file cap does not stop this, the /tmp size does
                with open(f'/tmp/fill{n}', 'wb') as f:
                    n += 1
                    for _ in range(4):
                        f.write(b'0' * (1 << 18))
                        f.flush()
                        total += 1 << 18
        except OSError as exc:
            print('tmp stopped at', total >> 20, 'MB:', exc.strerror, flush=True)
        for i in range(400):
            with open(f'fill{i}', 'wb') as f:
                f.write(b'1' * (1 << 20))
        print('METRIC wrote=400')
    """
    res = run(spec(tmp_path, py(code, m), disk_mb=16, memory_mb=256))
    assert "No space left on device" in res.stdout.text()
    assert int(res.stdout.text().split("tmp stopped at ")[1].split()[0]) <= 16
    assert res.status == "output_limit", res.stdout.text()
    assert "disk" in (res.error or "")
    written = sum(p.stat().st_size for p in res.workspace.glob("fill*"))
    assert written < 300 << 20
    assert_no_leftovers(m)


def test_reading_stdin_gets_eof(tmp_path: Path) -> None:
    m = marker()
    res = run(spec(tmp_path, py("import sys\ndata = sys.stdin.read()\nprint(f'METRIC stdin_len={len(data)}')", m), budget_s=10))
    assert res.status == "ok" and res.metrics == {"stdin_len": 0.0}
    assert res.wall_s < 5
    assert_no_leftovers(m)


def test_shell_string_command_and_missing_program(tmp_path: Path) -> None:
    res = run(spec(tmp_path, "echo 'val_bpb: 1.25' && echo done", metric="val_bpb"))
    assert res.status == "ok" and res.metrics == {"val_bpb": 1.25} and res.metric_source == "stdout"
    res = run(spec(tmp_path, ["no-such-program-xyz"]))
    assert res.status == "crash" and res.exit_code == 127
    assert "no-such-program-xyz" in res.stderr.text()
