"""A second `tracekit serve` on a busy port or a served store: one error line naming who holds it, exit 2,
no banner, no traceback, and the first server (and its store) untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests._support.collector import ServeProcess


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    return subprocess.run([sys.executable, "-m", "tracekit", "serve", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _assert_refused(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "collector on" not in out and "OTEL_EXPORTER" not in out, out  # no banner
    (line,) = out.strip().splitlines()
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_second_serve_on_the_same_store_names_the_running_one_before_any_banner(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ServeProcess(home)
    try:
        _assert_refused(_serve("--home", str(home), "--port", "0"),
                        "another tracekit collector is serving the store", str(home),
                        f"pid {first.proc.pid}", first.url, "--home")
        assert first.wait_healthy()["status"] == "ok"  # the first one serves on
    finally:
        first.stop()


def test_second_serve_on_a_busy_port_names_the_port_and_its_process(tmp_path: Path) -> None:
    first = ServeProcess(tmp_path / "one")
    port = first.url.rsplit(":", 1)[1]
    try:
        _assert_refused(_serve("--home", str(tmp_path / "two"), "--port", port),
                        f"127.0.0.1:{port}", "in use", f"pid {first.proc.pid}", "--port")
        assert not (tmp_path / "two").exists()  # nothing claimed, nothing created
        assert httpx.get(first.url + "/health").status_code == 200
    finally:
        first.stop()


def test_holder_note_in_the_lock_file_is_shown_only_when_it_reads_right(tmp_path: Path) -> None:
    """The note is another process's text: a hostile one is cut short and inert, a malformed one is left out."""
    from tracekit._errors import CollectorError
    from tracekit.collector._homelock import HomeLock

    folder = tmp_path / "home" / "_collector"
    holder = HomeLock(folder, tmp_path / "home")
    holder.claim(url="http://127.0.0.1:9/\x1b]52;c;ZXZpbA==\x07" + "x" * 1000)
    try:
        second = HomeLock(folder, tmp_path / "home")
        with pytest.raises(CollectorError) as err:
            second.claim()
        text = str(err.value)
        assert f"pid {os.getpid()}" in text and "\x1b" not in text and "\x07" not in text and len(text) < 600
        (folder / "collector.lock").write_text(json.dumps({"pid": "1; rm -rf /", "url": 5}))
        with pytest.raises(CollectorError, match="another tracekit collector is serving") as err:
            second.claim()
        assert "pid" not in str(err.value)
    finally:
        holder.release()
