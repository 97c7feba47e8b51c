"""Isolation backends: how the sandbox's init process (the shim) is launched.

`bwrap` (bubblewrap) builds an allow-listed file system view; `unshare` (util-linux) gives the
same namespaces with Landlock for the file system; `local` is a plain child process and is NOT
isolation. `choose()` picks the best available one (or the one asked for). See docs/sandbox.md.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SandboxError

SANDBOX_UID = 1000
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/security/opasswd")
MASKED_DIRS = ("/etc/ssh", "/etc/sudoers.d", "/etc/ssl/private", "/etc/credstore", "/etc/credstore.encrypted")
SYS_RO = ("/sys/devices/system/cpu", "/sys/devices/system/node")
DEV_RW = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random")


def python_paths() -> list[str]:
    """What the candidate needs to run this interpreter and import tracekit (read-only)."""
    import tracekit

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent), str(Path(tracekit.__file__).resolve().parent)}
    return sorted(p for p in paths if p and os.path.isdir(p) and not _under_system(p))


def _under_system(p: str) -> bool:
    return any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS if not os.path.islink(d))


@dataclass
class Launch:
    """Everything a backend needs to start one run's shim."""

    shim: list[str]  # interpreter, flags, shim path (config appended by the backend)
    shim_config: dict[str, Any]
    workspace: Path
    io_dir: Path
    tmp_dir: Path  # host folder used as /tmp where the backend cannot mount one
    disk_bytes: int | None
    network: bool
    ro_paths: list[str] = field(default_factory=list)
    rw_paths: list[str] = field(default_factory=list)


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

    def sandbox_tmp(self, tmp_dir: Path) -> str:
        """The path the candidate sees as its temporary folder (and HOME)."""
        return str(tmp_dir)

    def _shim(self, launch: Launch, **extra: Any) -> list[str]:
        import json

        cfg = dict(launch.shim_config, mode="pidns" if self.pidns else "local", **extra)
        return [*launch.shim, json.dumps(cfg, separators=(",", ":"))]


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
        args = ["bwrap", *self._base_flags(launch.network), *self._root_view()]
        for f in MASKED_FILES:
            if os.path.isfile(f):
                args += ["--ro-bind", "/dev/null", f]
        for d in MASKED_DIRS:
            if os.path.isdir(d) and not os.path.islink(d):
                args += ["--tmpfs", d, "--remount-ro", d]
        args += ["--proc", "/proc", "--dev", "/dev"]
        size = ["--size", str(launch.disk_bytes)] if launch.disk_bytes else []
        args += [*size, "--tmpfs", "/tmp", *size, "--tmpfs", "/dev/shm"]
        for p in SYS_RO:
            args += ["--ro-bind-try", p, p]
        mounts = [(p, "--ro-bind") for p in [*python_paths(), *launch.ro_paths]]
        mounts += [(str(launch.workspace), "--bind"), (str(launch.io_dir), "--bind")]
        mounts += [(p, "--bind") for p in launch.rw_paths]
        for path, op in sorted(mounts, key=lambda m: Path(m[0]).parts.__len__()):
            args += [op, path, path]
        args += ["--chdir", str(launch.workspace), "--"]
        return args + self._shim(launch)

    def sandbox_tmp(self, tmp_dir: Path) -> str:
        return "/tmp"


class UnshareBackend(Backend):
    name = "unshare"

    def probe(self) -> str | None:
        if shutil.which("unshare") is None:
            return "unshare (util-linux) is not installed"
        err = _probe_cmd(("unshare", *self._flags(network=False), "/bin/true"))
        if err:
            return err
        if landlock_abi() < 1:
            return "the kernel has no Landlock (needed for the file system rules of the unshare backend)"
        return None

    @staticmethod
    def _flags(network: bool) -> list[str]:
        flags = ["--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
                 "--propagation", "private"]
        if not network:
            flags.insert(2, "--net")
        return [*flags, "--"]

    def argv(self, launch: Launch) -> list[str]:
        ro = [d for d in SYSTEM_DIRS if d != "/etc" and os.path.exists(d)]
        ro += [e.path for e in os.scandir("/etc") if e.path not in MASKED_FILES and e.path not in MASKED_DIRS]
        ro += ["/proc", "/dev", *[p for p in SYS_RO if os.path.exists(p)], *python_paths(), *launch.ro_paths]
        rw = [str(launch.workspace), str(launch.io_dir), str(launch.tmp_dir), "/dev/shm", *DEV_RW, *launch.rw_paths]
        extra: dict[str, Any] = {"landlock": {"ro": ro, "rw": rw}, "drop_caps": True, "lo_up": not launch.network}
        if launch.disk_bytes:
            extra["tmpfs"] = {"path": str(launch.tmp_dir), "size": launch.disk_bytes}
        return ["unshare", *self._flags(launch.network), *self._shim(launch, **extra)]


class LocalBackend(Backend):
    name = "local"
    pidns = False
    isolated = False

    def probe(self) -> str | None:
        return None

    def argv(self, launch: Launch) -> list[str]:
        return self._shim(launch)


BACKEND_TYPES: dict[str, type[Backend]] = {"bwrap": BwrapBackend, "unshare": UnshareBackend, "local": LocalBackend}


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return max(int(libc.syscall(444, None, 0, 1)), 0)


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


LOCAL_WARNING = (
    "tracekit sandbox: WARNING: backend 'local' is NOT isolation. The candidate runs as this user, "
    "with this machine's network and file system; only the environment allowlist, output caps, "
    "limits and the process-tree kill apply. Install bubblewrap for a real sandbox."
)
