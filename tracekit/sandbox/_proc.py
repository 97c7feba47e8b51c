"""/proc helpers: the process tree under a pid, and killing it. Linux only."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parens: split after the last ')'
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) >= 2:
            out[int(name)] = int(rest[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (not `pid` itself), parents before children."""
    children: dict[int, list[int]] = {}
    for child, parent in _ppid_map().items():
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_tree(pid: int, sig: int = signal.SIGKILL, include_root: bool = True, rounds: int = 20) -> None:
    """Signal `pid` and all its descendants, repeatedly until none is left (or `rounds` passes)."""
    for _ in range(rounds):
        pids = descendants(pid)
        if include_root and alive(pid):
            pids.insert(0, pid)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig != signal.SIGKILL:
            return
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    state = data[data.rfind(b")") + 2:][:1]
    return state not in (b"Z", b"X", b"")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def set_oom_score_adj(pid: int, value: int) -> bool:
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
        return True
    except OSError:
        return False


def wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """`proc.wait(timeout)` without its polling sleeps (up to 50 ms each): a pidfd wakes us at the exit."""
    if proc.poll() is None:
        try:
            fd = os.pidfd_open(proc.pid)
        except (OSError, AttributeError):
            proc.wait(timeout)
            return
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
    proc.wait(0.1 if proc.poll() is None else None)
