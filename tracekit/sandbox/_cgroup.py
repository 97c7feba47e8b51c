"""Per-run cgroups for memory and process caps: v1 and v2 detected per controller at run time.

Each run gets a child group named `tracekit-<run id>` under the harness's *own* group of each
controller (never the harness's group itself), created before the run and removed after it.
v2 is used for a controller when the harness's v2 group offers it; otherwise the v1 hierarchy
that mounts it (this is what hybrid systems do). A controller neither offers is reported
unavailable and the runner falls back to rlimits.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "pids")
PREFIX = "tracekit-"


@dataclass(frozen=True)
class Slot:
    """Where one controller lives for this process: its version and the harness's own group folder."""

    version: int
    base: Path


@dataclass
class Layout:
    slots: dict[str, Slot] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def detect(proc_cgroup: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Find, for memory and pids, the version and the harness's own group folder."""
    layout = Layout()
    try:
        own = Path(proc_cgroup).read_text().splitlines()
        mounts = Path(mountinfo).read_text().splitlines()
    except OSError as exc:
        layout.notes.append(f"cannot read cgroup info ({exc})")
        return layout
    v1_paths: dict[str, str] = {}
    v2_path: str | None = None
    for line in own:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        for c in parts[1].split(","):
            v1_paths[c] = parts[2]
    v1_mounts: dict[str, tuple[str, str]] = {}
    v2_mount: tuple[str, str] | None = None
    for line in mounts:
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        root, point = lf[3], lf[4].replace("\\040", " ")
        if rf[0] == "cgroup2":
            v2_mount = (root, point)
        elif rf[0] == "cgroup":
            for opt in rf[2].split(","):
                v1_mounts.setdefault(opt, (root, point))
    for c in CONTROLLERS:
        if v2_mount is not None and v2_path is not None:
            base = _join(v2_mount, v2_path)
            offered = _words(base / "cgroup.controllers")
            if c in offered:
                layout.slots[c] = Slot(2, base)
                continue
        if c in v1_paths and c in v1_mounts:
            layout.slots[c] = Slot(1, _join(v1_mounts[c], v1_paths[c]))
        else:
            layout.notes.append(f"no cgroup {c} controller available")
    return layout


def _join(mount: tuple[str, str], path: str) -> Path:
    root, point = mount
    rel = path
    if root != "/" and rel.startswith(root):
        rel = rel[len(root):]
    return Path(point) / rel.lstrip("/")


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_kv(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        return None
    return None


class RunCgroup:
    """The cgroup(s) of one run. `create()` returns None for a controller it could not set up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirs: dict[str, tuple[int, Path]] = {}  # controller -> (version, folder)
        self.notes: list[str] = []

    @classmethod
    def create(cls, layout: Layout, name: str, memory_bytes: int | None, pids_max: int | None) -> "RunCgroup":
        cg = cls(name)
        wanted = {"memory": memory_bytes, "pids": pids_max}
        for c, limit in wanted.items():
            slot = layout.slots.get(c)
            if limit is None or slot is None:
                continue
            folder = slot.base / f"{PREFIX}{name}"
            try:
                base = _v2_base(slot.base, c) if slot.version == 2 else slot.base
                folder = base / f"{PREFIX}{name}"
                _sweep_stale(base)
                folder.mkdir(exist_ok=True)
                cg.dirs[c] = (slot.version, folder)
                cg._limit(c, slot.version, folder, limit)
            except OSError as exc:
                cg.notes.append(f"cgroup v{slot.version} {c}: {exc.strerror or exc} at {folder}")
                cg.dirs.pop(c, None)
                _rmdir(folder)
        return cg

    def _limit(self, c: str, version: int, folder: Path, limit: int) -> None:
        if c == "memory" and version == 1:
            (folder / "memory.limit_in_bytes").write_text(str(limit))
            memsw = folder / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit))
        elif c == "memory":
            (folder / "memory.max").write_text(str(limit))
            swap = folder / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        else:
            (folder / "pids.max").write_text(str(limit))

    def has(self, controller: str) -> bool:
        return controller in self.dirs

    def version(self, controller: str) -> int | None:
        d = self.dirs.get(controller)
        return d[0] if d else None

    def _folders(self) -> list[Path]:
        return sorted({f for _, f in self.dirs.values()})

    def attach(self, pid: int) -> None:
        for folder in self._folders():
            (folder / "cgroup.procs").write_text(str(pid))

    def set_pids_max(self, n: int) -> None:
        d = self.dirs.get("pids")
        if d is not None:
            (d[1] / "pids.max").write_text(str(n))

    def procs(self) -> set[int]:
        out: set[int] = set()
        for folder in self._folders():
            try:
                out.update(int(x) for x in (folder / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return out

    def peak_memory_bytes(self) -> int | None:
        d = self.dirs.get("memory")
        if d is None:
            return None
        version, folder = d
        return _read_int(folder / ("memory.max_usage_in_bytes" if version == 1 else "memory.peak"))

    def oom_kills(self) -> int | None:
        d = self.dirs.get("memory")
        if d is None:
            return None
        version, folder = d
        return _read_kv(folder / ("memory.oom_control" if version == 1 else "memory.events"), "oom_kill")

    def pids_limited(self) -> int | None:
        d = self.dirs.get("pids")
        return _read_kv(d[1] / "pids.events", "max") if d else None

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group(s); True when they are empty."""
        for version, folder in self.dirs.values():
            if version == 2 and (folder / "cgroup.kill").exists():
                try:
                    (folder / "cgroup.kill").write_text("1")
                except OSError:
                    pass
        end = time.monotonic() + timeout
        while True:
            pids = self.procs()
            if not pids:
                return True
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.01)

    def remove(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        for folder in self._folders():
            while not _rmdir(folder) and time.monotonic() < end:
                self.kill_all(timeout=0.5)
                time.sleep(0.02)


def _v2_base(own: Path, controller: str) -> Path:
    """Where v2 run groups get `controller`: under our own group, else beside it.

    v2's "no internal processes" rule forbids enabling a controller for children of a group that
    holds processes (ours holds the harness), so when our group does not already delegate it we
    create run groups as siblings, in the parent that gave our group the controller.
    """
    if controller in _words(own / "cgroup.subtree_control"):
        return own
    try:
        (own / "cgroup.subtree_control").write_text(f"+{controller}")
        return own
    except OSError:
        pass
    parent = own.parent
    if controller in _words(parent / "cgroup.subtree_control") and os.access(parent, os.W_OK):
        return parent
    raise OSError(errno.EBUSY, f"cgroup v2: {own} cannot delegate {controller} (it holds processes) and its "
                  f"parent is not writable; run the harness in a group that delegates memory and pids")


def _rmdir(folder: Path) -> bool:
    try:
        os.rmdir(folder)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        return False


def _sweep_stale(base: Path, min_age_s: float = 300.0) -> None:
    """Remove empty `tracekit-*` groups left by harnesses that died (older than `min_age_s`)."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    now = time.time()
    for e in entries:
        if not e.name.startswith(PREFIX) or not e.is_dir(follow_symlinks=False):
            continue
        try:
            if now - e.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            if (Path(e.path) / "cgroup.procs").read_text().strip():
                continue
        except OSError:
            continue
        _rmdir(Path(e.path))
