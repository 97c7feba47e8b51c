"""The sandbox's init process: starts the candidate, kills its whole tree on request, reports back.

Run by the harness inside the backend (standard library only, interpreter flags `-S -I -B`):

    python -S -I -B _shim.py '{"argv": ["python", "train.py"], "ctl_fd": 5, "status_fd": 6, ...}'

A warm shim (`"warm": true`, started ahead of its run by `sandbox/_warm.py`) builds its view,
leaves root and loads the seccomp filter first, reports `warm`, and then reads the rest of its
configuration from `ctl_fd` (`C`, a 4-byte length, JSON: the command, its folder, limits,
environment, OTLP spool) before it copies the workspace in and reports `ready`. Everything the
candidate sees is built per run all the same; only the run's own settings arrive later.

Protocol. The shim writes JSON lines to `status_fd`: `ready` (set up, waiting), `started`, then
`exit` (the candidate's exit code or signal, CPU time and peak RSS of everything it reaped). The
harness writes single bytes to `ctl_fd`: `G` go, `T` SIGTERM every process of the run, `K`
SIGKILL them; end-of-file (the harness died) kills everything too. In a PID namespace the shim is
PID 1, so `kill(-1, sig)` reaches every process of the run, daemons included; in local mode it
is a child subreaper and walks its descendants. When the candidate's main process exits, anything
it left behind is killed. With `otlp`, a small OTLP/HTTP receiver on 127.0.0.1 stores request
bodies in a spool folder (the harness decodes and validates them afterwards).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys
import threading
import time

TYPE_CHECKING = False  # not typing's: importing typing costs every run ~10 ms; mypy reads the block all the same
if TYPE_CHECKING:
    from typing import BinaryIO, NoReturn, NotRequired, TypedDict

    from ._view import View

    class Drop(TypedDict):
        uid: int
        gid: int

    class Otlp(TypedDict):
        dir: str  # the spool folder inside the run
        max_bytes: int  # of all request bodies together

    Seed = TypedDict("Seed", {"from": str, "to": str})  # `from` is a keyword: the functional form

    class Config(TypedDict):
        """The harness's JSON argument (`sandbox/_supervise.py` `run`, completed by `sandbox/_backends.py`)."""

        argv: list[str]
        cwd: str
        ctl_fd: int
        status_fd: int
        mode: str  # pidns | local
        rlimits: NotRequired[dict[str, list[int]]]  # RLIMIT_* name -> [soft, hard]
        otlp: NotRequired[Otlp]
        seed: NotRequired[Seed]
        hold: NotRequired[bool]
        view: NotRequired[View]  # the unshare backend only, with the three below
        lo_up: NotRequired[bool]
        drop: NotRequired[Drop]
        seccomp_fd: NotRequired[int]
        warm: NotRequired[bool]  # the run's own settings (argv, cwd, rlimits, otlp, env) come over ctl_fd
        env: NotRequired[dict[str, str]]  # a warm shim's candidate environment (else the shim's own)

MAX_CONFIG_BYTES = 4 << 20


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


libc = ctypes.CDLL(None, use_errno=True)


def send(fd: int, **event: object) -> None:
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    except OSError:
        pass


def lo_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))  # SIOCSIFFLAGS IFF_UP
    finally:
        s.close()


def drop_privileges(drop: Drop | None) -> None:
    """Leave root for good: `drop` {uid, gid} (real root) or stay uid 0 of the user namespace; either
    way no capabilities (bounding, ambient, effective, permitted), securebits locked, no new privileges."""
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    if drop is not None:
        os.setgroups([])
        os.setresgid(drop["gid"], drop["gid"], drop["gid"])
        os.setresuid(drop["uid"], drop["uid"], drop["uid"])
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise OSError(errno.EPERM, "could not leave root")
    else:
        libc.prctl(28, 0b11101111, 0, 0, 0)  # PR_SET_SECUREBITS: noroot, no_setuid_fixup, keep_caps_locked, no_ambient_raise (+ locks)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    hdr = CapHeader(0x20080522, 0)
    data = (CapData * 2)()
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def load_seccomp(fd: int) -> None:
    """Install the BPF program read from `fd` (built by the harness with libseccomp) on this process."""
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    n = len(data) // 8
    prog = (SockFilter * n).from_buffer_copy(data[: n * 8])
    fprog = SockFprog(n, ctypes.cast(prog, ctypes.POINTER(SockFilter)))
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")


def seed(cfg: Seed) -> None:
    """Copy the workspace's first contents into the run's tmpfs (symlinks as symlinks, specials skipped)."""
    import shutil

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if not (os.path.isdir(os.path.join(folder, n)) or os.path.islink(os.path.join(folder, n))
                                         or os.path.isfile(os.path.join(folder, n)))]

    shutil.copytree(cfg["from"], cfg["to"], symlinks=True, ignore=ignore, dirs_exist_ok=True)


def child(cfg: Config, env: dict[str, str]) -> NoReturn:
    argv = cfg["argv"]
    try:
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("0")
        except OSError:
            pass
        for name, (soft, hard) in cfg.get("rlimits", {}).items():
            which = getattr(resource, name)
            cur_soft, cur_hard = resource.getrlimit(which)
            if cur_hard != resource.RLIM_INFINITY:
                hard = min(hard, cur_hard)
            resource.setrlimit(which, (min(soft, hard), hard))
        os.chdir(cfg["cwd"])
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"tracekit sandbox: cannot run {argv[0]!r}: {exc.strerror or exc}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the shim
        os.write(2, f"tracekit sandbox: cannot start the command: {exc!r}\n".encode())
        os._exit(126)


class Tree:
    def __init__(self, pidns: bool) -> None:
        self.pidns = pidns
        self.me = os.getpid()

    def descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            rest = data[data.rfind(b")") + 2:].split()
            if len(rest) >= 2:
                children.setdefault(int(rest[1]), []).append(int(name))
        out, todo = [], list(children.get(self.me, []))
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def signal_all(self, sig: int) -> None:
        if self.pidns:
            try:
                os.kill(-1, sig)
            except OSError:
                pass
            return
        for p in self.descendants():
            try:
                os.kill(p, sig)
            except OSError:
                pass


class Receiver:
    """A minimal OTLP/HTTP server: each POST body becomes one file in `dir` (total capped)."""

    def __init__(self, cfg: Otlp) -> None:
        self.dir = cfg["dir"]
        self.max_bytes = cfg["max_bytes"]
        self.used = 0
        self.seq = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.active = 0

    def start(self) -> None:
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.active >= 32:
                    conn.close()
                    continue
                self.active += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(60)
            f = conn.makefile("rb")
            while self.one_request(conn, f):
                pass
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.active -= 1
            conn.close()

    def one_request(self, conn: socket.socket, f: BinaryIO) -> bool:
        line = f.readline(8192)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            return False
        method, path = parts[0], parts[1]
        headers: dict[str, str] = {}
        for _ in range(100):
            h = f.readline(8192)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, ok = self.read_body(f, headers)
        ctype = headers.get("content-type", "application/x-protobuf").split(";")[0].strip()
        is_json = ctype == "application/json"
        status = "200 OK"
        if not ok:
            status = "413 Payload Too Large"
        elif method == "POST" and path.split("?")[0].rstrip("/") == "/v1/traces":
            self.store(body, is_json, headers.get("content-encoding", "").lower() == "gzip")
        elif method != "POST":
            status = "405 Method Not Allowed"
        reply = b"{}" if is_json else b""
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(reply)}\r\n\r\n".encode() + reply)
        return ok and headers.get("connection", "").lower() != "close"

    def read_body(self, f: BinaryIO, headers: dict[str, str]) -> tuple[bytes, bool]:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(f.readline(64).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    f.readline(64)
                    break
                total += size
                if not self.reserve(size):
                    return b"", False
                chunks.append(f.read(size))
                f.readline(64)
            return b"".join(chunks), True
        length = int(headers.get("content-length", "0") or 0)
        if length < 0 or not self.reserve(length):
            return b"", False
        return f.read(length), True

    def reserve(self, n: int) -> bool:
        with self.lock:
            if self.used + n > self.max_bytes:
                return False
            self.used += n
            return True

    def store(self, body: bytes, is_json: bool, gz: bool) -> None:
        with self.lock:
            self.seq += 1
            seq = self.seq
        name = f"{seq:06d}.{'json' if is_json else 'pb'}{'.gz' if gz else ''}"
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(body)
        os.rename(tmp, os.path.join(self.dir, name))


def read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = os.read(fd, n - len(data))
        except InterruptedError:
            continue
        if not chunk:
            os._exit(0)  # the harness let the warm sandbox go unused
        data += chunk
    return data


def await_config(cfg: Config, ctl: int, st: int) -> None:
    """A warm shim: say so, then take the run's settings from the harness (or exit unused)."""
    send(st, ev="warm")
    if read_exact(ctl, 1) != b"C":
        os._exit(0)
    (n,) = struct.unpack(">I", read_exact(ctl, 4))
    if n > MAX_CONFIG_BYTES:
        os._exit(125)
    cfg.update(json.loads(read_exact(ctl, n)))


def main() -> NoReturn:
    cfg: Config = json.loads(sys.argv[1])
    ctl, st = cfg["ctl_fd"], cfg["status_fd"]
    os.set_inheritable(ctl, False)
    os.set_inheritable(st, False)
    pidns = cfg["mode"] == "pidns"
    if not pidns:
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans (daemons) stay in our tree
    if cfg.get("lo_up"):
        lo_up()
    if cfg.get("view") is not None:  # the unshare backend: build the file system view, then leave root
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        if TYPE_CHECKING:
            from . import _view
        else:
            import _view  # run by path: the folder is on sys.path, not the package

        drop = cfg.get("drop")
        _view.build(cfg["view"], owner=(drop["uid"], drop["gid"]) if drop else None)
        socket.sethostname("sandbox")
        drop_privileges(drop)
        if cfg.get("seccomp_fd") is not None:
            load_seccomp(cfg["seccomp_fd"])
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the run cannot ptrace this process or open its /proc files
    if cfg.get("warm"):
        await_config(cfg, ctl, st)
    if cfg.get("seed"):
        seed(cfg["seed"])
    env = dict(os.environ)
    if "env" in cfg:  # a warm shim: the run's environment, with what the backend set for the shim (bwrap's PWD)
        env = {**cfg["env"], **{k: v for k, v in env.items() if k == "PWD"}}
    receiver = Receiver(cfg["otlp"]) if cfg.get("otlp") else None
    if receiver is not None:
        url = f"http://127.0.0.1:{receiver.port}"
        env.update({
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url + "/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        })
    send(st, ev="ready", otlp_port=receiver.port if receiver else None)
    try:
        go = os.read(ctl, 1)
    except OSError:
        go = b""
    if go != b"G":
        os._exit(0)
    pid = os.fork()
    if pid == 0:
        child(cfg, env)
    send(st, ev="started")
    tree = Tree(pidns)
    release = threading.Event()  # the harness copied what it needs out of the run's tmpfs

    def control() -> None:
        while True:
            try:
                b = os.read(ctl, 1)
            except InterruptedError:
                continue
            except OSError:
                b = b""
            if b == b"T":
                tree.signal_all(signal.SIGTERM)
            elif b == b"K":
                tree.signal_all(signal.SIGKILL)
            elif b == b"X":
                release.set()
            elif not b:
                tree.signal_all(signal.SIGKILL)
                release.set()
                return

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: tree.signal_all(signal.SIGTERM))
    threading.Thread(target=control, daemon=True).start()
    if receiver is not None:
        receiver.start()
    status = 0
    while True:
        try:
            wpid, wstatus, _ = os.wait4(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if wpid == pid:
            status = wstatus
            break
    left = 0
    end = time.monotonic() + 5
    while True:
        try:
            wpid, _, _ = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid:
            left += 1
            continue
        if time.monotonic() > end:
            break
        tree.signal_all(signal.SIGKILL)
        time.sleep(0.005)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    send(st, ev="exit", code=code if code >= 0 else None, signal=-code if code < 0 else None,
         cpu_s=round(ru.ru_utime + ru.ru_stime, 6), maxrss_kb=ru.ru_maxrss, left=left)
    if cfg.get("hold"):  # keep the namespaces (and the run's tmpfs) until the harness has read them
        release.wait()
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
