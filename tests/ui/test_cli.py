"""`tracekit ui` and `tracekit serve` serve the pages, as a user starts them (subprocesses on loopback)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ui.conftest import ROOT, UIStore


def _start(args: list[str], home: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(extra_env or {})
    proc = subprocess.Popen([sys.executable, "-m", "tracekit", *args, "--home", str(home), "--port", "0"], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+)/ui/", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("no URL in the banner: " + "".join(lines))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_tracekit_ui_serves_the_pages_over_a_store_without_writing_it(ui_store: UIStore, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in home.rglob("*"))
    proc, url = _start(["ui"], home)
    try:
        page = httpx.get(url + "/ui/runs")
        assert page.status_code == 200 and ui_store.ids["run_id"] in page.text
        assert httpx.get(url + "/", follow_redirects=True).url.path == "/ui/traces"
    finally:
        _stop(proc)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in home.rglob("*")) == before  # nothing written, no lock taken


def test_tracekit_serve_mounts_the_pages_and_says_where(ui_store: UIStore, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    proc, url = _start(["serve"], home, {"TRACEKIT_TOKEN": "serve-ui-token-0123456789"})
    try:
        assert httpx.get(url + "/ui/traces").status_code == 401  # tokens on: the sign-in page
        ok = httpx.get(url + "/ui/traces", headers={"Authorization": "Bearer serve-ui-token-0123456789"})
        assert ok.status_code == 200 and "calc_agent" in ok.text
        assert httpx.get(url + "/docs").status_code == 200
    finally:
        _stop(proc)


def test_tracekit_ui_allow_writes_says_so_and_takes_an_annotation(ui_store: UIStore, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    proc = subprocess.Popen([sys.executable, "-m", "tracekit", "ui", "--allow-writes", "--home", str(home), "--port", "0"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    try:
        banner = proc.stderr.readline()
        assert "the review and annotation forms write to it" in banner, banner
        url = re.search(r"(http://127\.0\.0\.1:\d+)/ui/", banner)
        assert url is not None
        trace = ui_store.ids["agent_trace"]
        with httpx.Client(base_url=url.group(1)) as c:
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', c.get(f"/ui/traces/{trace}").text)
            assert csrf is not None
            r = c.post("/ui/annotations", headers={"Sec-Fetch-Site": "same-origin"},
                       data={"csrf": csrf.group(1), "kind": "trace", "target_id": trace, "label": "from-shell", "author": "ana"})
            assert r.status_code == 303 and "from-shell" in c.get(f"/ui/traces/{trace}").text
    finally:
        _stop(proc)
    assert any((home / "annotations").glob("*.parquet"))
