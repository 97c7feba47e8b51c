"""The launcher: the first process of every run, between the harness and the isolation backend.

Run by the harness (standard library only, interpreter flags `-S -I -B`):

    python -S -I -B _launch.py '{"argv": ["bwrap", ...], "stage": {...}, "uid": 1900012345, "gid": ...}'

1. Joins a fresh anonymous session keyring, so nothing of the harness's keyring is reachable
   from the run (the seccomp filter also denies the keyring calls inside).
2. When the harness runs as root, the sandbox must not be root in any form. bubblewrap started
   by root maps the sandbox's uid to host root, and `--userns` cannot switch to another uid (its
   setuid happens before its setgid). So the launcher drops to an unprivileged host uid *before*
   bubblewrap creates its namespaces. A process of that uid cannot traverse folders such as
   `/root` (mode 0700) to reach the interpreter, so first, in a private mount namespace that the
   host never sees, it bind-mounts every source the backend needs onto a small tmpfs (`stage`)
   that any uid can traverse; the backend binds them from there to their usual paths. What is
   inside each source keeps its own file modes: a file only root may read stays unreadable.
3. Executes the backend with the environment it was given.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs every run ~10 ms; mypy reads the block all the same
if TYPE_CHECKING:
    from typing import NoReturn, NotRequired, TypedDict

    class Stage(TypedDict):
        dir: str  # the tmpfs's mount point
        binds: list[str]  # sources, bound at <dir>/<index>

    class Config(TypedDict):
        """The harness's JSON argument (`sandbox/_warm.py`, `launcher_argv`)."""

        argv: list[str]
        uid: NotRequired[int]
        gid: NotRequired[int]
        stage: NotRequired[Stage]

KEYCTL = {"x86_64": 250, "aarch64": 219, "arm64": 219, "riscv64": 219, "ppc64le": 249, "s390x": 280,
          "i686": 288, "i386": 288, "armv7l": 311}
KEYCTL_JOIN_SESSION_KEYRING = 1
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 4096, 16384, 1 << 18, 2, 4

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def fail(message: str) -> NoReturn:
    os.write(2, f"tracekit sandbox launcher: {message}\n".encode())
    os._exit(125)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        fail(f"{what} failed: {os.strerror(err)}")


def new_session_keyring() -> None:
    nr = KEYCTL.get(platform.machine())
    if nr is None:
        return
    if libc.syscall(nr, KEYCTL_JOIN_SESSION_KEYRING, None) < 0 and ctypes.get_errno() != 38:  # ENOSYS: no keyrings
        fail(f"cannot join a new session keyring: {os.strerror(ctypes.get_errno())}")


def stage(cfg: Stage) -> None:
    """Private mount namespace; a tmpfs at cfg['dir'] with each source bound at <dir>/<index>."""
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making the mounts private")
    top = cfg["dir"].encode()
    check(libc.mount(b"tmpfs", top, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=65536"), "mounting the stage")
    for index, source in enumerate(cfg["binds"]):
        point = os.path.join(cfg["dir"], str(index))
        if os.path.isdir(source):
            os.mkdir(point, 0o755)
        else:
            os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        check(libc.mount(source.encode(), point.encode(), None, MS_BIND | MS_REC, None), f"binding {source}")


def resolve(name: str) -> str:
    """The program's path, found before dropping privileges (the standard library may be out of reach after)."""
    if "/" in name:
        return name
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    fail(f"cannot start {name!r}: not found on PATH")


def main() -> None:
    cfg: Config = json.loads(sys.argv[1])
    exe = resolve(cfg["argv"][0])
    new_session_keyring()
    if cfg.get("stage"):
        stage(cfg["stage"])
    if cfg.get("uid") is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        if os.geteuid() == 0 or os.getegid() == 0:
            fail("could not drop root privileges")
    try:
        os.execve(exe, cfg["argv"], os.environ)
    except OSError as exc:
        fail(f"cannot start {cfg['argv'][0]!r}: {exc.strerror}")


if __name__ == "__main__":
    main()
