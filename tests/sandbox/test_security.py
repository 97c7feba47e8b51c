"""Attacks on the sandbox by a candidate: each class a test, on every backend that claims the property.

Issue 10's findings: a candidate that was host root in all but name (uid 1000 mapped to uid 0,
`/proc/sys` writable), shared the harness's session keyring, reached host Unix sockets and
`/dev/shm` (unshare), bypassed the disk cap (fallocate, unlinked files, deep paths, many files),
froze the sandbox's init with ptrace and forged its status line, and read root-only files in /etc.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import time
from pathlib import Path

import pytest

from tracekit.sandbox import check, run
from tracekit.sandbox._proc import cmdline
from tracekit.sandbox._warm import SHIM
from tracekit.sandbox._workspace import MAX_DEPTH, MAX_FILES

from tests._support import ROOT
from tests._support.sandbox import ISOLATED, assert_no_leftovers, marker, needs_isolation, py, spec, wait_for

pytestmark = needs_isolation
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the harness runs as root only in CI and on this machine")
KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())
ADD_KEY = {"x86_64": 248, "aarch64": 217}.get(platform.machine())


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


@as_root
@pytest.mark.parametrize("backend", ISOLATED)
def test_run_is_never_host_root(tmp_path: Path, backend: str) -> None:
    """Every process of the run is an unprivileged host uid, with no capabilities, under seccomp."""
    m = marker()
    code = """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', sys.argv[1], 'child'])
        time.sleep(30)
    """
    import threading

    done: list = []
    t = threading.Thread(target=lambda: done.append(run(spec(tmp_path, py(code, m), backend=backend, budget_s=30))))
    t.start()
    try:
        end = time.monotonic() + 20
        while len(candidates := [p for p in wait_for(m) if cmdline(p)[1:2] == ["-c"]]) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        parents = {int(_status(p)["PPid"]) for p in candidates}  # the shim forked the command (a warm one's argv has no marker)
        init = [p for p in parents if cmdline(p)[1:5] == ["-S", "-I", "-B", SHIM]]
        seen = [_status(p) for p in candidates + init]
    finally:
        for p in candidates:
            os.kill(p, 9)
        t.join(30)
    assert len(candidates) == 2 and len(init) == 1
    for st in seen:
        uids = {int(u) for u in st["Uid"].split()}
        gids = {int(g) for g in st["Gid"].split()}
        assert 0 not in uids and 0 not in gids, st["Uid"]
        assert min(uids) >= 1000
        assert st["CapEff"] == st["CapPrm"] == "0000000000000000"
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
        assert st["Groups"] == ""
    assert done and done[0].limits["host_uid"] == min(int(u) for u in seen[0]["Uid"].split())
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_kernel_settings_cannot_be_written(tmp_path: Path, backend: str) -> None:
    """/proc/sys and friends are read-only, and the run cannot remount them."""
    targets = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/panic", "/proc/sys/vm/drop_caches",
               "/proc/sysrq-trigger", "/proc/sys/kernel/hostname"]
    before = {t: Path(t).read_text() for t in targets if t != "/proc/sysrq-trigger" and t != "/proc/sys/vm/drop_caches"}
    m = marker()
    code = f"""
        import ctypes, os
        for path in {targets!r}:
            try:
                fd = os.open(path, os.O_WRONLY)
                print('OPENED', path)
                os.write(fd, b'0\\n')
                print('WROTE', path)
            except OSError as exc:
                print('denied', path, exc.strerror)
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mount(None, b'/proc/sys', None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, rw
        print('remount', rc, os.strerror(ctypes.get_errno()))
        print('METRIC ok=1')
    """
    res = run(spec(tmp_path, py(code, m), backend=backend))
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out, res.stderr.text())
    assert "OPENED" not in out and "WROTE" not in out, out
    assert "remount -1" in out
    for t, value in before.items():
        assert Path(t).read_text() == value
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_forbidden_system_calls_fail_with_eperm(tmp_path: Path, backend: str) -> None:
    """The seccomp filter: keyrings, ptrace, perf, bpf, mounts, namespaces, kexec, modules, io_uring."""
    m = marker()
    code = """
        import ctypes, errno, os, platform
        libc = ctypes.CDLL(None, use_errno=True)
        NR = {'x86_64': dict(keyctl=250, add_key=248, ptrace=101, perf_event_open=298, bpf=321, mount=165,
                             unshare=272, setns=308, kexec_load=246, init_module=175, io_uring_setup=425,
                             userfaultfd=323, open_by_handle_at=304, clone3=435),
              'aarch64': dict(keyctl=219, add_key=217, ptrace=117, perf_event_open=241, bpf=280, mount=40,
                              unshare=97, setns=268, kexec_load=104, init_module=105, io_uring_setup=425,
                              userfaultfd=282, open_by_handle_at=265, clone3=435)}[platform.machine()]
        for name, nr in sorted(NR.items()):
            args = {'unshare': (0x10000000,), 'ptrace': (16, 1, 0, 0), 'keyctl': (0, -3, 0)}.get(name, (0, 0, 0, 0, 0))
            rc = libc.syscall(nr, *args)
            print(name, rc, errno.errorcode.get(ctypes.get_errno(), '?'))
        print('METRIC ok=1')
    """
    res = run(spec(tmp_path, py(code, m), backend=backend))
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out, res.stderr.text())
    lines = dict(line.split(" ", 1) for line in out.splitlines() if not line.startswith("METRIC"))
    for name, verdict in lines.items():
        want = "-1 ENOSYS" if name == "clone3" else "-1 EPERM"
        assert verdict == want, (name, verdict)
    assert len(lines) == 14
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_init_cannot_be_traced_or_its_status_forged(tmp_path: Path, backend: str) -> None:
    """The sandbox's init (PID 1) is out of the run's reach: no ptrace, /proc/1/mem, fds or environ."""
    m = marker()
    code = """
        import ctypes, os, signal
        libc = ctypes.CDLL(None, use_errno=True)
        for what, call in (('attach', lambda: libc.ptrace(16, 1, 0, 0)), ('seize', lambda: libc.ptrace(0x4206, 1, 0, 0))):
            print(what, call(), ctypes.get_errno())
        for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd', '/proc/1/root'):
            try:
                if path.endswith(('fd', 'root')):
                    print('LISTED', path, os.listdir(path))
                else:
                    open(path, 'rb').read(1)
                    print('READ', path)
            except OSError as exc:
                print('denied', path, exc.strerror)
        for fd in range(3, 64):  # the status pipe is not inherited either
            try:
                os.write(fd, b'{"ev": "exit", "code": 0}\\n')
                print('WROTE fd', fd)
            except OSError:
                pass
        try:
            os.kill(1, signal.SIGSTOP)
        except OSError as exc:
            print('stop denied', exc.strerror)
        print('METRIC score=1')
        raise SystemExit(7)
    """
    res = run(spec(tmp_path, py(code, m), backend=backend, metric="score"))
    out = res.stdout.text()
    assert "attach -1 1" in out and "seize -1 1" in out, out
    assert "READ" not in out and "LISTED" not in out and "WROTE fd" not in out, out
    assert res.status == "crash" and res.exit_code == 7  # the real exit, not a forged one
    assert_no_leftovers(m)


@pytest.mark.skipif(KEYCTL is None, reason="keyctl numbers known for x86_64 and aarch64 only")
@pytest.mark.parametrize("backend", [*ISOLATED, "local"])
def test_harness_keyring_is_not_shared(tmp_path: Path, backend: str) -> None:
    """The run gets a fresh session keyring (every backend); isolated runs cannot use keyrings at all."""
    libc = ctypes.CDLL(None, use_errno=True)
    secret = f"tk-secret-{marker()}".encode()
    key = libc.syscall(ADD_KEY, b"user", b"tracekit-test", secret, len(secret), -3)  # KEY_SPEC_SESSION_KEYRING
    if key < 0:
        pytest.skip(f"no session keyring here (errno {ctypes.get_errno()})")
    try:
        m = marker()
        code = f"""
            import ctypes, ctypes.util
            libc = ctypes.CDLL(None, use_errno=True)
            found = libc.syscall({KEYCTL}, 10, -3, b'user', b'tracekit-test', 0)  # KEYCTL_SEARCH in @s
            print('search', found, ctypes.get_errno())
            buf = ctypes.create_string_buffer(256)
            n = libc.syscall({KEYCTL}, 11, {key}, buf, 256)  # KEYCTL_READ of the harness's key by id
            print('read', n, buf.raw[:max(n, 0)])
            print('METRIC ok=1')
        """
        res = run(spec(tmp_path, py(code, m), backend=backend))
    finally:
        libc.syscall(KEYCTL, 3, key)  # KEYCTL_REVOKE
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out)
    assert secret.decode() not in out
    assert "search -1" in out and "read -1" in out
    if backend != "local":
        assert "search -1 1" in out  # EPERM: the filter denies keyctl
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_host_sockets_and_shared_memory_are_unreachable(tmp_path: Path, backend: str) -> None:
    """No host Unix socket by path (the socket lives in a host folder outside the view) and a private /dev/shm."""
    sock_path = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    server.listen(4)
    server.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(b"\0tracekit-test-" + marker().encode())
    abstract.listen(4)
    abstract.setblocking(False)
    name = abstract.getsockname()
    m = marker()
    shm_name = f"/dev/shm/tk-{m}"
    code = f"""
        import os, socket
        for addr in ({str(sock_path)!r}, {name!r}, '/run/dbus/system_bus_socket', '/var/run/docker.sock'):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(addr)
                print('CONNECTED', addr)
            except OSError as exc:
                print('refused', exc.strerror)
        open({shm_name!r}, 'w').write('left behind')
        print('shm files', os.listdir('/dev/shm'))
        print('METRIC ok=1')
    """
    try:
        res = run(spec(tmp_path, py(code, m), backend=backend))
        for s in (server, abstract):
            with pytest.raises(BlockingIOError):
                s.accept()
    finally:
        server.close()
        abstract.close()
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out, res.stderr.text())
    assert "CONNECTED" not in out
    assert f"shm files ['tk-{m}']" in out  # its own /dev/shm, empty but for what it wrote
    assert not os.path.exists(shm_name)  # and nothing left on the host
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_disk_cap_is_enforced_by_the_kernel(tmp_path: Path, backend: str) -> None:
    """fallocate, unlinked-but-open files and /dev/shm all stop at disk_mb; nothing lands on the host disk."""
    m = marker()
    code = """
        import os
        def falloc(path, size):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
                print('ALLOCATED', path, size >> 20)
            except OSError as exc:
                print('refused', path, exc.strerror)
            finally:
                os.close(fd)
        for where in ('big.bin', '/tmp/big.bin', '/dev/shm/big.bin', '/sandbox/io/big.bin'):
            falloc(where, 6 << 30)
        fd = os.open('hidden.bin', os.O_WRONLY | os.O_CREAT, 0o600)
        os.unlink('hidden.bin')
        written = 0
        try:
            while written < (1 << 30):
                written += os.write(fd, b'x' * (1 << 20))
        except OSError as exc:
            print('unlinked file stopped at', written >> 20, 'MB:', exc.strerror)
        print('METRIC ok=1')
    """
    before = os.statvfs(tmp_path)
    res = run(spec(tmp_path, py(code, m), backend=backend, disk_mb=32, memory_mb=512))
    after = os.statvfs(tmp_path)
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out, res.stderr.text())
    assert "ALLOCATED" not in out, out
    assert out.count("No space left on device") == 5, out
    assert int(out.split("stopped at ")[1].split()[0]) <= 32
    assert res.limits["disk_enforced_by"] == "tmpfs size (kernel)"
    assert (before.f_bavail - after.f_bavail) * after.f_frsize < 64 << 20  # the host disk did not absorb it
    assert_no_leftovers(m)


@pytest.mark.parametrize("backend", ISOLATED)
def test_deep_and_numerous_files_cost_the_harness_a_bounded_copy(tmp_path: Path, backend: str) -> None:
    """Paths deeper than PATH_MAX and more files than the copy budget are capped by the kernel and
    read back within the harness's budgets, with a note."""
    m = marker()
    code = f"""
        import os
        fd = os.open('.', os.O_RDONLY)
        for i in range({MAX_DEPTH + 100}):  # deeper than PATH_MAX (4096) in total
            os.mkdir('d' * 60, dir_fd=fd)
            nxt = os.open('d' * 60, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(fd)
        os.mkdir('many')
        for i in range({MAX_FILES + 500}):
            open(f'many/{{i}}', 'w').close()
        print('METRIC ok=1')
    """
    t0 = time.monotonic()
    res = run(spec(tmp_path, py(code, m), backend=backend, disk_mb=256, budget_s=120, memory_mb=1024))
    assert res.status == "ok", (res.error, res.stderr.text())
    notes = " | ".join(res.notes)
    assert f"deeper than {MAX_DEPTH}" in notes and f"more than {MAX_FILES}" in notes, notes
    copied = sum(1 for _ in (res.workspace / "many").iterdir())
    assert copied < MAX_FILES
    assert time.monotonic() - t0 < 120
    assert_no_leftovers(m)


@as_root
@pytest.mark.parametrize("backend", ISOLATED)
def test_root_only_files_are_unreadable(tmp_path: Path, backend: str) -> None:
    """A file only root may read (in /etc, or among ro_paths) stays unreadable: the run is not root."""
    m = marker()
    etc_secret = Path(f"/etc/tk-root-only-{m}")
    etc_secret.write_text("etc secret")
    etc_secret.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    (data / "public.txt").write_text("public")
    (data / "private.txt").write_text("private secret")
    (data / "private.txt").chmod(0o600)
    code = f"""
        for path in ({str(etc_secret)!r}, {str(data / 'private.txt')!r}, {str(data / 'public.txt')!r}):
            try:
                print('READ', path, open(path).read())
            except OSError as exc:
                print('denied', path, exc.strerror)
        print('METRIC ok=1')
    """
    try:
        res = run(spec(tmp_path, py(code, m), backend=backend, ro_paths=[str(data)]))
    finally:
        etc_secret.unlink()
    out = res.stdout.text()
    assert res.status == "ok", (res.error, out)
    assert "secret" not in out
    assert f"READ {data / 'public.txt'} public" in out
    assert_no_leftovers(m)


def test_check_reports_identity_seccomp_proc_sys_keyring_and_disk() -> None:
    report = check()
    probe = report.probe_run or {}
    assert report.isolation["seccomp"].startswith("on"), report.isolation
    assert report.isolation["proc_sys"] == "read-only"
    assert report.isolation["keyring"].startswith("fresh session keyring")
    assert report.isolation["disk"] == "tmpfs size (kernel)"
    if os.geteuid() == 0:
        assert "unprivileged host uid" in report.isolation["uid"]
    assert probe["status"] == "ok", probe
    text = report.summary()
    for word in ("uid", "seccomp", "/proc/sys", "keyring", "disk"):
        assert word in text


NON_ROOT_SCRIPT = """
import json, sys
from pathlib import Path
from tracekit.sandbox import RunSpec, check, run
out = {"isolation": check().isolation, "runs": {}}
code = ("import os\\n"
        "try:\\n    os.open('/proc/sys/kernel/panic', os.O_WRONLY); print('PROC_SYS_WRITABLE')\\nexcept OSError: pass\\n"
        "print('seccomp', open('/proc/self/status').read().split('Seccomp:')[1].split()[0])\\n"
        "print('uid', os.getuid())\\nprint('METRIC ok=1')\\n")
for backend in sys.argv[2:]:
    res = run(RunSpec([sys.executable, "-c", code], backend=backend, budget_s=30, trace_home=Path(sys.argv[1]) / "home"))
    out["runs"][backend] = {"status": res.status, "stdout": res.stdout.text(), "error": res.error}
print(json.dumps(out))
"""


@as_root
def test_non_root_harness_gets_the_same_isolation() -> None:
    """A harness that is not root (the common case on a laptop): the run is its uid, same filter and view.

    Runs this machine's system Python 3.11 as `nobody` against the repository and the venv's
    packages (the venv's own interpreter lives under /root, which nobody cannot reach)."""
    import json
    import shutil
    import subprocess
    import sysconfig
    import tempfile

    system_python = "/usr/bin/python3.11"
    if not os.path.exists(system_python) or not shutil.which("setpriv"):
        pytest.skip("needs /usr/bin/python3.11 and setpriv to run a harness as nobody")
    work = Path(tempfile.mkdtemp(prefix="tracekit-nonroot-"))
    work.chmod(0o777)
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work),
               "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system_python, "-c",
                               NON_ROOT_SCRIPT, str(work), *ISOLATED], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["isolation"]["uid"].startswith("the harness's uid 65534")
    assert report["isolation"]["seccomp"].startswith("on") and report["isolation"]["proc_sys"] == "read-only"
    for backend, r in report["runs"].items():
        assert r["status"] == "ok", (backend, r)
        assert "PROC_SYS_WRITABLE" not in r["stdout"] and "seccomp 2" in r["stdout"], (backend, r)
