"""Landlock from Python: a process takes away its own right to write files (or anything else it names).

    from tracekit import _landlock
    _landlock.abi()                                    # 0 when the kernel has no Landlock
    _landlock.restrict_self(ro=["/"], deny_tcp=True)   # from here on: read-only everywhere, no TCP

Landlock is the kernel's unprivileged sandbox: a ruleset lists what a process may still do below
some folders; once applied it holds for the process and every child, cannot be undone, and binds
root as much as anyone (file modes and capabilities do not matter). This module is the one place
the Landlock system calls are made: the collector's SQL worker uses it, and the sandbox's shim can
load it by path (`importlib.util.spec_from_file_location`) because it needs the standard library
only.

What a ruleset handles depends on the kernel's ABI: 1 files and folders, 2 rename/link across
folders (REFER), 3 truncate, 4 TCP bind/connect, 5 device ioctls, 6 scoping (abstract Unix
sockets and signals to processes outside the domain). Everything handled and not granted by a
rule is denied; an older kernel simply handles less, which `restrict_self` returns so callers can
say so.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # not typing's: this module stays as light as the scripts that may load it by path
if TYPE_CHECKING:
    from collections.abc import Iterable

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446  # the same numbers on every architecture
RULE_PATH_BENEATH = 1
CREATE_RULESET_VERSION = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the rights that apply to a file itself
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
PR_SET_NO_NEW_PRIVS = 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    return max(int(_libc.syscall(CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)), 0)


def handled_fs(version: int) -> int:
    """Every file-system right the kernel of ABI `version` can enforce."""
    handled = (1 << 13) - 1 if version >= 1 else 0
    if version >= 2:
        handled |= REFER
    if version >= 3:
        handled |= TRUNCATE
    if version >= 5:
        handled |= IOCTL_DEV
    return handled


def ruleset(ro: Iterable[str] = (), rw: Iterable[str] = (), *, execute: bool = True, deny_tcp: bool = False,
            scope: bool = False) -> tuple[int | None, int]:
    """A ruleset fd granting read (and execute) below `ro`, everything below `rw`, nothing else.

    Returns (fd, abi); (None, 0) without Landlock. `deny_tcp` handles TCP bind and connect (ABI 4+)
    with no rule granting them; `scope` confines abstract Unix sockets and signals to the domain
    (ABI 6+). Paths that do not exist are skipped.
    """
    version = abi()
    if version < 1:
        return None, 0
    handled = handled_fs(version)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if deny_tcp and version >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if scope and version >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    fd = _libc.syscall(CREATE_RULESET, ctypes.byref(attr), size, 0)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset failed: {os.strerror(err)}")
    read_rights = READ_FILE | READ_DIR | (EXECUTE if execute else 0)
    try:
        for rights, paths in ((read_rights, ro), (handled, rw)):
            for path in paths:
                _add_path(fd, path, rights & handled)
    except BaseException:
        os.close(fd)
        raise
    return fd, version


def _add_path(fd: int, path: str, rights: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = _PathBeneath(rights, pfd)
        if _libc.syscall(ADD_RULE, fd, RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_add_rule({path}) failed: {os.strerror(err)}")
    finally:
        os.close(pfd)


def enforce(fd: int) -> None:
    """Set no_new_privs and apply the ruleset `fd` to this thread (call before starting threads)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")
    if _libc.syscall(RESTRICT_SELF, fd, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_restrict_self failed: {os.strerror(err)}")


def restrict_self(ro: Iterable[str] = ("/",), rw: Iterable[str] = (), *, execute: bool = False, deny_tcp: bool = True,
                  scope: bool = True) -> int:
    """Build a ruleset and apply it to this (single-threaded) process; returns the ABI (0: none applied)."""
    fd, version = ruleset(ro, rw, execute=execute, deny_tcp=deny_tcp, scope=scope)
    if fd is None:
        return 0
    try:
        enforce(fd)
    finally:
        os.close(fd)
    return version
