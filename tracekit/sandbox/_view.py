"""The unshare backend's file system view, built by the sandbox's init before anything else runs.

Standard library only (imported by `_shim.py`). Runs in fresh mount, PID, network, IPC, UTS and
cgroup namespaces, as real root (a root harness) or as root of a new user namespace (any other
harness), and builds what bubblewrap builds for the bwrap backend:

    /usr /etc /opt ... the interpreter, tracekit, ro_paths   read-only binds (submounts too)
    /etc/shadow ... (masked files)                            /dev/null, read-only
    /etc/ssh ... (masked folders)                             empty read-only tmpfs
    /proc                                                     the run's own; /proc/sys read-only
    /dev                                                      null zero full tty random urandom, links
    /tmp                                                      tmpfs, disk_mb
    /sandbox                                                  tmpfs, disk_mb: workspace/ io/ shm/ .seed/ (ro)
    /                                                         a small tmpfs, read-only at the end

then pivots into it, so nothing else of the host (its home, projects, Unix sockets under /run
or /tmp, /dev/shm, other runs) is reachable by any path.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # not typing's: importing typing costs every run ~10 ms; mypy reads the block all the same
if TYPE_CHECKING:
    from typing import TypedDict

    class View(TypedDict):
        """What to build (`sandbox/_backends.py`, `UnshareBackend.argv`); paths are the host's."""

        root: str  # an empty folder that becomes the new root
        system: list[str]  # /usr, /etc, ...: bound read-only at the same path
        ro: list[str]  # the interpreter, tracekit, the spec's ro_paths
        rw: list[str]  # the spec's rw_paths
        symlinks: list[list[str]]  # [target, path]: /bin -> usr/bin and the like
        mask_files: list[str]
        mask_dirs: list[str]
        proc_ro: list[str]
        dev: list[str]
        seed: str  # the workspace's first contents, bound read-only at <run>/.seed
        run: str  # the sandbox's folder (/sandbox)
        size: int | None  # disk_mb in bytes, for each tmpfs the run can write

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217, "i686": 217, "armv7l": 218}
# statvfs f_flag bits -> mount flags that a remount must keep (the kernel locks them in user namespaces)
_KEEP = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
         (2048, MS_NODIRATIME), (4096, MS_RELATIME))

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source} on {target}")


def _mount_points_under(target: str) -> list[str]:
    """Mount points at or below `target` (from /proc/self/mountinfo), parents first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == target or point.startswith(target.rstrip("/") + "/"):
                out.append(point)
    return sorted(set(out), key=len)


def _remount_ro(target: str) -> None:
    for point in _mount_points_under(target):
        keep = 0
        try:
            flag = os.statvfs(point).f_flag
            keep = sum(ms for st, ms in _KEEP if flag & st)
        except OSError:
            continue
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)


def _make_point(path: str, is_dir: bool) -> None:
    os.makedirs(path if is_dir else os.path.dirname(path), exist_ok=True)
    if not is_dir and not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def bind(source: str, target: str, ro: bool = True) -> None:
    _make_point(target, os.path.isdir(source))
    mount(source, target, None, MS_BIND | MS_REC)
    if ro:
        _remount_ro(target)


def tmpfs(target: str, mode: str, size: int | None = None, ro: bool = False) -> None:
    os.makedirs(target, exist_ok=True)
    opts = f"mode={mode}" + (f",size={int(size)}" if size else "")
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | (MS_RDONLY if ro else 0), opts)


def build(view: View, owner: tuple[int, int] | None = None) -> None:
    """Build the view under view['root'] and pivot into it; `owner` (uid, gid) owns /sandbox."""
    new = view["root"]
    tmpfs(new, "0755", 1 << 20)

    def join(p: str) -> str:
        return new + p

    for d in view["system"]:
        bind(d, join(d))
    for target, path in view["symlinks"]:
        os.symlink(target, join(path))
    for f in view["mask_files"]:
        bind("/dev/null", join(f))
    for d in view["mask_dirs"]:
        tmpfs(join(d), "0755", 4096, ro=True)
    os.makedirs(join("/proc"), exist_ok=True)
    mount("proc", join("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for p in view["proc_ro"]:
        if os.path.exists(join(p)):
            mount(join(p), join(p), None, MS_BIND | MS_REC)
            _remount_ro(join(p))
    tmpfs(join("/dev"), "0755", 65536)
    for d in view["dev"]:
        _make_point(join(d), False)
        mount(d, join(d), None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("shm", view["run"] + "/shm")):
        os.symlink(target, join("/dev/" + name))
    tmpfs(join("/tmp"), "1777", view["size"])
    run = join(view["run"])
    tmpfs(run, "0755", view["size"])
    for sub, mode in (("workspace", 0o755), ("io", 0o755), ("io/spool", 0o755), ("io/otlp", 0o755), ("shm", 0o1777)):
        os.mkdir(os.path.join(run, sub))
        os.chmod(os.path.join(run, sub), mode)
    if owner is not None:
        for dirpath, dirnames, _ in os.walk(run):
            os.chown(dirpath, *owner)
    bind(view["seed"], os.path.join(run, ".seed"))
    for d in sorted(view["ro"], key=lambda p: p.count("/")):
        bind(d, join(d))
    for d in sorted(view["rw"], key=lambda p: p.count("/")):
        bind(d, join(d), ro=False)
    _remount_ro(join("/dev"))
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    os.chdir(new)
    _check(libc.syscall(PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    os.fchdir(old)
    os.close(old)
    _check(libc.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
