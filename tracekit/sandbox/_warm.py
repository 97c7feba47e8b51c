"""Warm sandboxes: the next run's sandbox is started while the current one runs.

Most of a sandboxed run's start-up is the launch chain (the launcher, bubblewrap or unshare
building the view, the shim's interpreter), not the command. A warm sandbox is that chain run
ahead of time for a *shape* (backend, network, disk cap, extra read-only and writable paths, the
uid rule): it builds its view, leaves root, loads the seccomp filter, and then waits for its run's
own settings (`_shim.await_config`). Taking one skips the chain; nothing else changes:

- each warm sandbox serves exactly one run and is never reused: a run never sees another run's
  processes, files or tmpfs, the same as a cold start;
- it has its own unprivileged host uid (when the harness is root), drawn like a run's;
- the workspace is copied in after it is taken (its seed folder is bound empty and filled then),
  and the run's cgroup, limits, environment and deadline are set per run as before;
- an unused warm sandbox holds no candidate code: it is closed (its control pipe shut, the shim
  exits) when the process exits, when it idles past `IDLE_S`, or to make room.

Taking a sandbox schedules the next one of the same shape in the background, so a loop that runs
the same kind of run again and again (the optimizer, an eval suite) starts all but the first warm.
`TRACEKIT_SANDBOX_WARM=0` turns it off (every run starts cold).
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import _proc, _seccomp
from ._backends import STAGE_DIR, Backend, Launch, host_uid, prepare_stage
from ._spec import RunSpec
from ._status import StatusReader

SHIM = str(Path(__file__).resolve().with_name("_shim.py"))
LAUNCHER = str(Path(__file__).resolve().with_name("_launch.py"))
IDLE_S = 300.0  # an unused warm sandbox is closed after this long
PER_SHAPE = 4  # at most this many idle per shape (parallel workers take several at once)
TOTAL = 8  # and this many in all
START_TIMEOUT_S = 30.0
SHIM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # the shim's own; the run's comes later


@dataclass(frozen=True)
class Shape:
    """Everything a backend's command line depends on besides the run's own settings."""

    backend: str
    network: bool
    disk_bytes: int | None
    ro_paths: tuple[str, ...]
    rw_paths: tuple[str, ...]
    uid_rule: tuple[bool, str | None]  # (harness is root, TRACEKIT_SANDBOX_UID)


def shape_of(spec: RunSpec, backend: Backend) -> Shape:
    return Shape(backend.name, spec.network, spec.disk_mb * 2**20 if spec.disk_mb else None,
                 tuple(str(p) for p in spec.ro_paths), tuple(str(p) for p in spec.rw_paths),
                 (os.geteuid() == 0, os.environ.get("TRACEKIT_SANDBOX_UID")))


def launcher_argv(backend: Backend, launch: Launch) -> list[str]:
    """The backend's command line behind the launcher (fresh keyring; as root: stage and drop to the run's uid)."""
    import json

    cfg: dict[str, object] = {"argv": backend.argv(launch)}
    if backend.name == "bwrap" and launch.host_uid is not None:
        cfg.update(uid=launch.host_uid, gid=launch.host_uid)
        if launch.stage:
            prepare_stage()
            cfg["stage"] = {"dir": STAGE_DIR, "binds": launch.stage}
    return [sys.executable, "-S", "-I", "-B", LAUNCHER, json.dumps(cfg, separators=(",", ":"))]


@dataclass
class Slot:
    """A started sandbox waiting for its run: the launch chain's process and the pipes to its shim."""

    shape: Shape
    uid: int | None
    dir: Path  # seed/ (bound empty, filled when taken) and tmp/ (the unshare backend's root)
    proc: subprocess.Popen[bytes]
    out_r: int
    err_r: int
    ctl_w: int
    st_r: int
    born: float = field(default_factory=time.monotonic)
    pids: list[int] = field(default_factory=list)  # its processes under the launcher (fixed until its run goes)
    handed_over: bool = False  # its run's supervisor owns (and closes) the pipes

    def alive(self) -> bool:
        return self.proc.poll() is None and self.dir.is_dir()

    def close(self) -> None:
        """Let it go (unused: the shim exits on the closed pipe); anything left is killed, the folder removed."""
        if not self.handed_over:
            self.handed_over = True
            for fd in (self.ctl_w, self.out_r, self.err_r, self.st_r):
                os.close(fd)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _proc.kill_tree(self.proc.pid)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start(shape: Shape, backend: Backend) -> Slot:
    """Start one sandbox of `shape` and wait until its shim reports `warm`."""
    folder = Path(tempfile.mkdtemp(prefix="tracekit-warm-"))
    uid = host_uid(f"warm-{uuid.uuid4().hex}")
    for sub in ("seed", "tmp"):
        (folder / sub).mkdir()
    if uid is not None:
        os.chown(folder / "seed", uid, uid)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    seccomp_fd = _seccomp.write_to_fd() if backend.isolated else None
    launch = Launch(shim=[sys.executable, "-S", "-I", "-B", SHIM],
                    shim_config={"argv": [], "cwd": "/", "ctl_fd": ctl_r, "status_fd": st_w, "warm": True},
                    run_dir=folder, seed=folder / "seed", tmp_dir=folder / "tmp", disk_bytes=shape.disk_bytes,
                    network=shape.network, host_uid=uid, seccomp_fd=seccomp_fd, ro_paths=list(shape.ro_paths),
                    rw_paths=list(shape.rw_paths))
    passed = tuple(fd for fd in (ctl_r, st_w, seccomp_fd) if fd is not None)
    try:
        proc = subprocess.Popen(launcher_argv(backend, launch), stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                                pass_fds=passed, env=dict(SHIM_ENV), start_new_session=True, cwd=str(folder))
    except BaseException:
        for fd in (out_r, err_r, ctl_w, st_r):
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        for fd in (out_w, err_w, *passed):
            os.close(fd)
    slot = Slot(shape, uid, folder, proc, out_r, err_r, ctl_w, st_r)
    reader = StatusReader(st_r)
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if any(ev.get("ev") == "warm" for ev in reader.poll(0.05)):
            if reader.buf:  # nothing may follow `warm` before the run's settings
                break
            slot.pids = _proc.descendants(proc.pid) or [proc.pid]
            for pid in slot.pids:
                _proc.set_oom_score_adj(pid, -1000)  # the OOM killer should pick the candidate, not the init
            return slot
        if reader.eof or proc.poll() is not None:
            break
    slot.close()
    raise OSError(f"a warm {backend.name} sandbox did not start")


class Pool:
    """The idle warm sandboxes, and one long-lived thread that starts them.

    One thread, alive as long as the process: bubblewrap's `--die-with-parent` (PR_SET_PDEATHSIG)
    fires when the *thread* that started it ends, so a sandbox started from a short-lived thread
    would be killed with it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[Slot] = []
        self.starting: dict[Shape, int] = {}
        self.failures: dict[Shape, int] = {}
        self.closed = False
        self.requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.starter: threading.Thread | None = None

    def take(self, shape: Shape, backend: Backend) -> Slot | None:
        """A warm sandbox of `shape` (None: start cold); the next one is started in the background."""
        stale: list[Slot] = []
        slot = None
        with self.lock:
            now = time.monotonic()
            for s in list(self.idle):
                if now - s.born > IDLE_S or not s.alive():
                    self.idle.remove(s)
                    stale.append(s)
                elif slot is None and s.shape == shape:
                    self.idle.remove(s)
                    slot = s
            refill = (not self.closed and self.failures.get(shape, 0) < 2
                      and sum(s.shape == shape for s in self.idle) + self.starting.get(shape, 0) < PER_SHAPE)
            if refill:
                self.starting[shape] = self.starting.get(shape, 0) + 1
        for s in stale:
            s.close()
        if refill:
            self.later(lambda: self._refill(shape, backend))
        return slot

    def later(self, job: Callable[[], None]) -> None:
        """Run `job` on the pool's thread (starting the next sandbox, removing a finished run's folders)."""
        with self.lock:
            if self.starter is None:
                self.starter = threading.Thread(target=self._serve, name="tracekit-warm", daemon=True)
                self.starter.start()
        self.requests.put(job)

    def _serve(self) -> None:
        while True:
            self.requests.get()()

    def drain(self) -> None:
        """Wait for the jobs queued so far (the folders of finished runs gone)."""
        done = threading.Event()
        self.later(done.set)
        done.wait(60)

    def _refill(self, shape: Shape, backend: Backend) -> None:
        slot = None
        try:
            slot = start(shape, backend)
        except (OSError, ValueError):
            pass
        evicted: list[Slot] = []
        with self.lock:
            self.starting[shape] -= 1
            if slot is None:
                self.failures[shape] = self.failures.get(shape, 0) + 1
            elif self.closed:
                evicted.append(slot)
            else:
                self.failures.pop(shape, None)
                self.idle.append(slot)
                while len(self.idle) > TOTAL:
                    evicted.append(self.idle.pop(0))
        for s in evicted:
            s.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
        for s in idle:
            s.close()
        if self.starter is not None:
            self.drain()


POOL = Pool()
atexit.register(POOL.close)


def enabled() -> bool:
    return os.environ.get("TRACEKIT_SANDBOX_WARM", "1").strip().lower() not in ("0", "false", "no", "off")


def take(spec: RunSpec, backend: Backend) -> Slot | None:
    return POOL.take(shape_of(spec, backend), backend) if enabled() else None


def remove_later(*folders: Path) -> None:
    """Remove a finished run's scratch folders off the run's path (they hold nothing the result needs)."""
    def remove() -> None:
        for f in folders:
            shutil.rmtree(f, ignore_errors=True)

    POOL.later(remove)
