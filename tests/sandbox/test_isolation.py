"""What the isolated backends hide and forbid: network, secrets, the host's files, and surviving the harness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracekit.sandbox import LocalExecutor, run

from tests._support import ROOT
from tests._support.sandbox import ISOLATED, assert_no_leftovers, marker, needs_isolation, py, spec

pytestmark = needs_isolation


@pytest.mark.parametrize("backend", ISOLATED)
def test_cannot_reach_a_server_on_the_hosts_loopback(tmp_path: Path, backend: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    port = server.getsockname()[1]
    m = marker()
    code = f"""
        import socket
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
            print('CONNECTED')
        except OSError as exc:
            print('blocked:', exc)
        print('interfaces:', sorted(n for _, n in socket.if_nameindex()))
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()       # its own loopback works
        socket.create_connection(s.getsockname(), timeout=3).close()
        print('METRIC own_loopback=1')
    """
    try:
        res = run(spec(tmp_path, py(code, m), backend=backend))
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the host's server
    finally:
        server.close()
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out)
    assert "CONNECTED" not in out and "blocked:" in out
    assert "interfaces: ['lo']" in out
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_secrets_are_not_visible(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    m = marker()
    secret = "sk-ant-fake-" + m
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("LC_SECRET_TOKEN", secret)  # matches the LC_* allowlist pattern, still refused
    code = """
        import os
        hits = [k for k, v in os.environ.items() if 'sk-ant-fake' in v]
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    if b'sk-ant-fake' in open(f'/proc/{pid}/environ', 'rb').read():
                        hits.append(pid)
                except OSError:
                    pass
        print('pids seen:', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
        print(f'METRIC hits={len(hits)}')
    """
    res = run(spec(tmp_path, py(code, m), backend=backend, env={"GIVEN_API_KEY": "explicitly-passed"}))
    assert res.status == "ok", res.error
    assert res.metrics == {"hits": 0.0}, res.stdout.text()
    assert secret not in res.stdout.text() + res.stderr.text()
    saved = (res.run_dir / "spec.json").read_text()
    assert "explicitly-passed" not in saved and "GIVEN_API_KEY" in saved  # explicit env is passed, not logged
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_host_home_and_project_are_hidden(tmp_path: Path, backend: str) -> None:
    host_secret = tmp_path / "host-secret.txt"
    host_secret.write_text("top secret")
    project_file = ROOT / "pyproject.toml"
    home = Path.home()
    dotfiles = [p for p in (home / ".bashrc", home / ".profile", home / ".gitconfig") if p.exists()]
    targets = [host_secret, project_file, *dotfiles]
    m = marker()
    code = f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path).read()
                print('READ', path)
            except OSError as exc:
                print('denied', path, exc.strerror)
        try:
            print('home listing:', sorted(os.listdir({str(home)!r})))
        except OSError as exc:
            print('home listing denied:', exc.strerror)
        print('METRIC ok=1')
    """
    res = run(spec(tmp_path, py(code, m), backend=backend))
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out)
    assert "READ" not in out
    for t in targets:
        assert f"denied {t}" in out
    for d in dotfiles:
        assert f"'{d.name}'" not in out.split("home listing")[1]
    assert "top secret" not in out


@pytest.mark.parametrize("backend", ISOLATED)
def test_cannot_write_outside_the_workspace(tmp_path: Path, backend: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "original.txt").write_text("original")
    m = marker()
    targets = [ws / "original.txt", tmp_path / "outside.txt", Path(f"/etc/tk-evil-{m}"), Path(f"/usr/tk-evil-{m}"),
               tmp_path / "home" / "spans" / "forged.parquet"]
    code = f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write('pwned')
                print('WROTE', path)
            except OSError as exc:
                print('denied', path, exc.strerror)
        open('inside.txt', 'w').write('fine')
        print('METRIC ok=1')
    """
    res = run(spec(tmp_path, py(code, m), workspace=ws, backend=backend))
    assert res.status == "ok", (res.error, res.stdout.text())
    assert (ws / "original.txt").read_text() == "original"
    for t in targets[1:]:
        assert not t.exists(), t
    assert (res.workspace / "inside.txt").read_text() == "fine"
    assert res.changed_files == ["inside.txt"]


@pytest.mark.parametrize("backend", [*ISOLATED, "local"])
def test_killing_the_harness_kills_the_run(tmp_path: Path, backend: str) -> None:
    m = marker()
    script = (
        "import sys\nfrom pathlib import Path\nfrom tracekit.sandbox import RunSpec, run\n"
        f"run(RunSpec([sys.executable, '-c', 'import time; print(\"up\", flush=True); time.sleep(600)', {m!r}],"
        f" budget_s=600, backend={backend!r}, run_dir=Path({str(tmp_path / 'run')!r}),"
        f" trace_home=Path({str(tmp_path / 'home')!r})))\n"
    )
    env = {"PATH": os.environ["PATH"], "TRACEKIT_HOME": str(tmp_path / "home")}
    harness = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.DEVNULL)
    try:
        log = tmp_path / "run" / "stdout.log"
        end = time.monotonic() + 30
        while not (log.exists() and "up" in log.read_text()):
            assert harness.poll() is None, "the harness died before the run started"
            assert time.monotonic() < end, "the run never started"
            time.sleep(0.05)
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        assert_no_leftovers(m, timeout=5)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()


def test_parallel_runs_do_not_interfere(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "shared.txt").write_text("source")
    m = marker()
    code = """
        import sys, time
        me = sys.argv[2]
        open('shared.txt', 'w').write(me)
        time.sleep(0.5)
        assert open('shared.txt').read() == me, 'another run wrote into my workspace'
        open('/tmp/scratch', 'w').write(me)
        print(f'METRIC id={me}')
    """
    with LocalExecutor(max_workers=3) as ex:
        handles = [ex.submit(spec(tmp_path, py(code, m, str(i)), workspace=ws, run_dir=tmp_path / f"par{i}", metric="id"))
                   for i in range(3)]
        done = list(ex.as_completed(handles, timeout=60))
    assert sorted(h.run_id for h in done) == sorted(h.run_id for h in handles)
    results = [h.result() for h in handles]
    assert [r.status for r in results] == ["ok"] * 3, [r.error for r in results]
    assert [r.metrics["id"] for r in results] == [0.0, 1.0, 2.0]
    assert len({r.workspace for r in results}) == 3
    assert [(r.workspace / "shared.txt").read_text() for r in results] == ["0", "1", "2"]
    assert (ws / "shared.txt").read_text() == "source"
    assert_no_leftovers(m)
