"""Isolation backends: how the sandbox's init process (the shim) is launched.

`bwrap` (bubblewrap) builds an allow-listed file system view; `unshare` (util-linux) gives the
same namespaces and the init builds the same view itself; `local` is a plain child process and
is NOT isolation. `choose()` picks the best available one (or the one asked for).

Both isolated backends give the run the same world (docs/security.md):
- an unprivileged identity: uid 1000 inside, which on the host is the harness's own uid, or,
  when the harness is root, a fresh unprivileged uid per run (`host_uid`), never root;
- a read-only view of the system folders, the interpreter and `ro_paths`, with `/proc/sys` and
  the sensitive `/etc` entries covered; no host home, project, store, socket or `/dev/shm`;
- writable space only on tmpfs the kernel caps at `disk_mb` bytes each: `/sandbox` (the
  workspace, the result and spool folders, `/dev/shm` as a symlink into it) and `/tmp`;
- the seccomp filter of `_seccomp`, no network but loopback, own PID/IPC/UTS/cgroup namespaces.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SandboxError

SANDBOX_UID = 1000
HOST_UID_BASE = 1_900_000_000  # root harness: run i maps to HOST_UID_BASE + (crc32(run id) % 65536)
STAGE_DIR = "/run/tracekit-sandbox"  # an empty folder; each run mounts its own tmpfs there, privately
SANDBOX_ROOT = "/sandbox"  # where the run's tmpfs is, inside
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/security/opasswd")
MASKED_DIRS = ("/etc/ssh", "/etc/sudoers.d", "/etc/ssl/private", "/etc/credstore", "/etc/credstore.encrypted")
SYS_RO = ("/sys/devices/system/cpu", "/sys/devices/system/node")
PROC_RO = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
DEV_RW = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("shm", SANDBOX_ROOT + "/shm"))


@dataclass(frozen=True)
class Inside:
    """The run's folders as the candidate sees them."""

    workspace: str
    io: str
    tmp: str


def python_paths() -> list[str]:
    """What the candidate needs to run this interpreter and import tracekit (read-only)."""
    import tracekit

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent), str(Path(tracekit.__file__).resolve().parent)}
    return sorted(p for p in paths if p and os.path.isdir(p) and not _under_system(p))


def _under_system(p: str) -> bool:
    return any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS if not os.path.islink(d))


def host_uid(run_id: str) -> int | None:
    """The host uid a run maps to: None when the harness is not root (then it is the harness's own)."""
    if os.geteuid() != 0:
        return None
    fixed = os.environ.get("TRACEKIT_SANDBOX_UID")
    if fixed:
        uid = int(fixed)
        if uid <= 0:
            raise SandboxError(f"TRACEKIT_SANDBOX_UID={fixed!r}: use an unprivileged uid (> 0) that owns nothing on this host")
        return uid
    return HOST_UID_BASE + zlib.crc32(run_id.encode()) % 65536


@dataclass
class Launch:
    """Everything a backend needs to start one run's shim."""

    shim: list[str]  # interpreter, flags, shim path (config appended by the backend)
    shim_config: dict[str, Any]
    run_dir: Path
    seed: Path  # host folder with the workspace's first contents (isolated backends copy it in)
    tmp_dir: Path  # host folder: the local backend's /tmp; the unshare backend's new root mount point
    disk_bytes: int | None
    network: bool
    host_uid: int | None = None
    seccomp_fd: int | None = None
    ro_paths: list[str] = field(default_factory=list)
    rw_paths: list[str] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)  # filled by bwrap: sources the launcher must stage


class Backend(ABC):
    name: str = ""
    pidns: bool = True
    isolated: bool = True

    @abstractmethod
    def probe(self) -> str | None:
        """None if usable here, else why not."""

    @abstractmethod
    def argv(self, launch: Launch) -> list[str]:
        """The full command line that starts the shim inside this backend."""

    def inside(self, run_dir: Path) -> Inside:
        return Inside(f"{SANDBOX_ROOT}/workspace", f"{SANDBOX_ROOT}/io", "/tmp")

    def _shim(self, launch: Launch, **extra: Any) -> list[str]:
        import json

        cfg = dict(launch.shim_config, mode="pidns" if self.pidns else "local", **extra)
        if self.isolated:
            cfg.update(seed={"from": f"{SANDBOX_ROOT}/.seed", "to": f"{SANDBOX_ROOT}/workspace"}, hold=True)
        return [*launch.shim, json.dumps(cfg, separators=(",", ":"))]


def _traversable(path: str) -> bool:
    """True if any uid may reach `path` (every folder above it searchable by others)."""
    parts = Path(os.path.realpath(path)).parents
    try:
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in parts)
    except OSError:
        return False


class BwrapBackend(Backend):
    name = "bwrap"

    def probe(self) -> str | None:
        exe = shutil.which("bwrap")
        if exe is None:
            return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        return _probe_cmd(("bwrap", *self._base_flags(network=False), *self._root_view(), "--", "/bin/true"))

    @staticmethod
    def _base_flags(network: bool) -> list[str]:
        flags = ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                 "--cap-drop", "ALL", "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1",
                 "--hostname", "sandbox"]
        if network:
            flags.insert(1, "--share-net")
        return flags

    @staticmethod
    def _root_view() -> list[str]:
        args: list[str] = []
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", d, d]
        return args

    def argv(self, launch: Launch) -> list[str]:
        def src(path: str) -> str:  # as seen by bwrap, which runs as the unprivileged uid
            if launch.host_uid is None or _traversable(path):
                return path
            launch.stage.append(path)
            return f"{STAGE_DIR}/{len(launch.stage) - 1}"

        args = ["bwrap", *self._base_flags(launch.network)]
        if launch.seccomp_fd is not None:
            args += ["--seccomp", str(launch.seccomp_fd)]
        args += self._root_view()
        for f in MASKED_FILES:
            if os.path.isfile(f):
                args += ["--ro-bind", "/dev/null", f]
        for d in MASKED_DIRS:
            if os.path.isdir(d) and not os.path.islink(d):
                args += ["--tmpfs", d, "--remount-ro", d]
        args += ["--proc", "/proc"]
        for p in PROC_RO:
            args += ["--ro-bind-try", p, p]
        args += ["--perms", "0755", "--tmpfs", "/dev"]  # built by hand: bwrap's --dev leaves a writable /dev
        for d in DEV_RW:
            if os.path.exists(d):
                args += ["--dev-bind", d, d]
        for name, target in DEV_LINKS:
            args += ["--symlink", target, f"/dev/{name}"]
        for p in SYS_RO:
            args += ["--ro-bind-try", p, p]
        size = ["--size", str(launch.disk_bytes)] if launch.disk_bytes else []
        args += [*size, "--perms", "1777", "--tmpfs", "/tmp"]
        mounts = [(p, "--ro-bind") for p in [*python_paths(), *launch.ro_paths]]
        mounts += [(p, "--bind") for p in launch.rw_paths]
        for path, op in sorted(mounts, key=lambda m: len(Path(m[0]).parts)):
            args += [op, src(path), path]
        root = SANDBOX_ROOT
        args += [*size, "--perms", "0755", "--tmpfs", root]
        for sub, perms in (("workspace", "0755"), ("io", "0755"), ("io/spool", "0755"), ("io/otlp", "0755"), ("shm", "1777")):
            args += ["--perms", perms, "--dir", f"{root}/{sub}"]
        args += ["--ro-bind", src(str(launch.seed)), f"{root}/.seed"]
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        args += ["--chdir", f"{root}/workspace", "--"]
        return args + self._shim(launch)


class UnshareBackend(Backend):
    name = "unshare"

    def probe(self) -> str | None:
        if shutil.which("unshare") is None:
            return "unshare (util-linux) is not installed"
        return _probe_cmd(("unshare", *self._flags(network=False), "/bin/true"))

    @staticmethod
    def _flags(network: bool) -> list[str]:
        flags = ["--mount", "--pid", "--fork", "--kill-child", "--ipc", "--uts", "--cgroup", "--propagation", "private"]
        if os.geteuid() != 0:  # the user namespace makes us root of our own namespaces only
            flags = ["--user", "--map-root-user", *flags]
        if not network:
            flags.append("--net")
        return [*flags, "--"]

    def argv(self, launch: Launch) -> list[str]:
        symlinks = [[os.readlink(d), d] for d in SYSTEM_DIRS if os.path.islink(d)]
        system = [d for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
        system += [p for p in SYS_RO if os.path.exists(p)]
        view = {
            "root": str(launch.tmp_dir), "system": system, "ro": [*python_paths(), *launch.ro_paths],
            "rw": list(launch.rw_paths), "symlinks": symlinks,
            "mask_files": [f for f in MASKED_FILES if os.path.isfile(f)],
            "mask_dirs": [d for d in MASKED_DIRS if os.path.isdir(d) and not os.path.islink(d)],
            "proc_ro": list(PROC_RO), "dev": [d for d in DEV_RW if os.path.exists(d)],
            "seed": str(launch.seed), "run": SANDBOX_ROOT, "size": launch.disk_bytes,
        }
        extra: dict[str, Any] = {"view": view, "lo_up": not launch.network}
        if launch.host_uid is not None:
            extra["drop"] = {"uid": launch.host_uid, "gid": launch.host_uid}
        if launch.seccomp_fd is not None:
            extra["seccomp_fd"] = launch.seccomp_fd
        return ["unshare", *self._flags(launch.network), *self._shim(launch, **extra)]


class LocalBackend(Backend):
    name = "local"
    pidns = False
    isolated = False

    def probe(self) -> str | None:
        return None

    def inside(self, run_dir: Path) -> Inside:
        return Inside(str(run_dir / "workspace"), str(run_dir / "io"), str(run_dir / "tmp"))

    def argv(self, launch: Launch) -> list[str]:
        return self._shim(launch)


BACKEND_TYPES: dict[str, type[Backend]] = {"bwrap": BwrapBackend, "unshare": UnshareBackend, "local": LocalBackend}


def _probe_cmd(argv: tuple[str, ...]) -> str | None:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={"PATH": "/usr/bin:/bin"}, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]} failed to start: {exc}"
    if proc.returncode != 0:
        return f"{argv[0]} cannot create the sandbox here: {proc.stderr.decode(errors='replace').strip()[:300]}"
    return None


@functools.lru_cache(maxsize=None)
def probe(name: str) -> str | None:
    """Cached availability check of one backend: None if it works here, else the reason."""
    return BACKEND_TYPES[name]().probe()


def choose(name: str) -> Backend:
    """The backend called `name`, or for "auto" the first usable of bwrap, unshare, local."""
    if name == "auto":
        for candidate in ("bwrap", "unshare"):
            if probe(candidate) is None:
                return BACKEND_TYPES[candidate]()
        return LocalBackend()
    if name not in BACKEND_TYPES:
        raise SandboxError(f"unknown sandbox backend {name!r}; choose auto, bwrap, unshare or local")
    reason = probe(name)
    if reason is not None:
        raise SandboxError(f"sandbox backend {name!r} is not usable here: {reason}. Run `tracekit sandbox check`.")
    return BACKEND_TYPES[name]()


def prepare_stage() -> None:
    """Create the (empty) staging folder a root harness's launcher mounts its private tmpfs on."""
    os.makedirs(STAGE_DIR, mode=0o755, exist_ok=True)
    st = os.lstat(STAGE_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise SandboxError(f"{STAGE_DIR} must be a folder owned by root and writable by root only; remove it and retry")


LOCAL_WARNING = (
    "tracekit sandbox: WARNING: backend 'local' is NOT isolation. The candidate runs as this user, "
    "with this machine's network and file system; only the environment allowlist, output caps, "
    "limits and the process-tree kill apply. Install bubblewrap for a real sandbox."
)
