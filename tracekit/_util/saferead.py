"""Reading what an untrusted process left behind: no symlinks, no FIFOs or devices, bounded sizes.

A sandboxed run (or anything else tracekit does not control) can swap a folder for a symlink, a
file for a FIFO that blocks the reader forever, or a device, between the moment it finishes and
the moment tracekit reads. So every folder is opened with `O_DIRECTORY | O_NOFOLLOW` and every
name below it relative to that descriptor (a path is never resolved twice), files are looked at
with `fstatat` before they are opened (a FIFO or device is never opened) and opened with
`O_NOFOLLOW | O_NONBLOCK`, then `fstat` must still say "regular file" before a byte is read, and
at most `max_bytes + 1` bytes are read. Symlinks are never followed, even ones pointing inside.

    with SafeDir.open(io_dir) as io, io.sub("spool") as spool:
        for name, st in spool.entries():
            data = spool.read(name, max_bytes=1 << 20)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class UnsafePath(Exception):
    """What was found is not a plain folder or regular file within its size limit; the message says which.

    `reason` is "link", "type" (FIFO, device, folder, ...), "size" or "name", for callers that word
    their own advice.
    """

    def __init__(self, message: str, reason: str = "type") -> None:
        super().__init__(message)
        self.reason = reason


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePath(f"{name!r} is not a plain file name", "name")


class SafeDir:
    """An open folder; names below it are opened relative to its descriptor, never through a link."""

    def __init__(self, fd: int, label: str) -> None:
        self.fd = fd
        self.label = label

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, label: str | None = None) -> "SafeDir":
        """Open `path` (its last component must be a real folder). FileNotFoundError if it is absent."""
        return cls(_open_dir(os.fspath(path), None, label or os.fspath(path)), label or os.fspath(path))

    def sub(self, name: str) -> "SafeDir":
        """The folder `name` directly below this one (FileNotFoundError if absent, UnsafePath if not a folder)."""
        _check_name(name)
        label = f"{self.label}/{name}"
        return SafeDir(_open_dir(name, self.fd, label), label)

    def names(self) -> list[str]:
        """The names of every entry, sorted."""
        return sorted(os.listdir(self.fd))

    def entries(self, names: list[str] | None = None) -> list[tuple[str, os.stat_result]]:
        """(name, lstat) of every entry (or of `names`), sorted; symlinks are reported as symlinks, not followed."""
        out = []
        for name in self.names() if names is None else names:
            try:
                out.append((name, os.stat(name, dir_fd=self.fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue
        return out

    def read(self, name: str, max_bytes: int) -> bytes:
        """The whole content of the regular file `name`; UnsafePath if it is anything else or over `max_bytes`."""
        _check_name(name)
        label = f"{self.label}/{name}"
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):  # never open a FIFO (blocks) or a device (side effects)
            raise UnsafePath(f"{label} is {kind_of(st.st_mode)}, not a regular file; it was not read",
                             "link" if stat.S_ISLNK(st.st_mode) else "type")
        if st.st_size > max_bytes:
            raise UnsafePath(f"{label} is {st.st_size} bytes, over the limit of {max_bytes} bytes; it was not read", "size")
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{label} was replaced by a symlink; it was not followed", "link") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{label} is {kind_of(st.st_mode)}, not a regular file; it was not read")
            chunks, size = [], 0
            while size <= max_bytes:
                chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        if size > max_bytes:  # it grew after the fstat
            raise UnsafePath(f"{label} is over the limit of {max_bytes} bytes; it was not read", "size")
        return b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "SafeDir":
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _open_dir(name: str, dir_fd: int | None, label: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except OSError:
                mode = 0
            raise UnsafePath(f"{label} is {kind_of(mode)}, not a folder; tracekit does not follow it",
                             "link" if stat.S_ISLNK(mode) else "type") from None
        raise UnsafePath(f"{label} cannot be opened ({exc.strerror})") from None


def read_below(root: str | os.PathLike[str], rel: str, max_bytes: int, *, label: str | None = None) -> bytes:
    """The regular file at relative path `rel` under the folder `root`, every component opened without following links."""
    parts = [p for p in Path(rel).parts if p not in ("", ".")]
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise UnsafePath(f"{rel!r} must be a relative path inside the folder, without '..'", "name")
    folder = SafeDir.open(root, label=label)
    try:
        for part in parts[:-1]:
            inner = folder.sub(part)
            folder.close()
            folder = inner
        return folder.read(parts[-1], max_bytes)
    finally:
        folder.close()
