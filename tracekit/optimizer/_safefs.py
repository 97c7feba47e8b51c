"""Writes that cannot be redirected: every path is walked one name at a time from a directory fd.

The optimizer writes candidates, workspaces, context folders and reports into folders that hostile
processes touch between two writes (a command proposer edits its scratch copy and can reach the
context folder; the target may hold symbolic links). A path like `work/main-0003/sub/model.py`
written with `open()` follows any link on the way, so `sub -> /elsewhere` sends the candidate
outside. Here each folder is opened relative to its parent with O_NOFOLLOW, each file is created
as a fresh `O_CREAT|O_EXCL` temp next to its destination and renamed over it (a rename replaces a
link or a hard link instead of writing through it), and trees are copied and removed by fd. File
modes are never counted on: the harness may run as root.

    with Dir.open(run_dir / "context", create=True) as d:
        d.write("current/train.py", text, mode=0o444)
    check_rel("../x", "editable")           # UnsafePath: '..' leaves the folder
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from fnmatch import fnmatch
from pathlib import Path

from .._errors import OptimizerError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


class UnsafePath(OptimizerError):
    """A path that would leave its folder or pass through a symbolic link; nothing was written."""


def path_problem(rel: object) -> str | None:
    """Why `rel` is not a plain relative path inside a folder (None when it is one)."""
    if not isinstance(rel, str) or not rel:
        return f"{rel!r} is not a file name"
    if "\0" in rel:
        return f"{rel!r} holds a NUL byte"
    if rel.startswith("/"):
        return f"{rel!r} is an absolute path"
    parts = rel.split("/")
    if ".." in parts:
        return f"{rel!r} climbs out of its folder with '..'"
    if any(p in ("", ".") for p in parts):
        return f"{rel!r} is not a normalized path (use {os.path.normpath(rel)!r})"
    return None


def check_rel(rel: object, what: str) -> list[str]:
    """The parts of `rel`, or UnsafePath saying why it cannot name a file inside the folder."""
    problem = path_problem(rel)
    if problem:
        raise UnsafePath(f"{what} {problem}; give a path relative to the folder, without '..'")
    return str(rel).split("/")


def refuse_links(root: Path, rel: str, what: str) -> None:
    """UnsafePath when `root/rel` passes through (or is) a symbolic link, or is not a regular file."""
    here = root
    parts = check_rel(rel, what)
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{what} {rel!r} goes through the symbolic link {here} -> {os.readlink(here)}; tracekit never "
                             "reads or writes an editable or fixed file through a link. Replace the link with the real "
                             "folder or file, or list the file by its real path inside the target")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{what} {rel!r}: {here} is not a folder")
        if last and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{what} {rel!r} is not a regular file")


def _open_child(fd: int, name: str, create: bool, where: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        return _open_child(fd, name, False, where)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise UnsafePath(f"{where}: {name!r} is a symbolic link or not a folder; tracekit never writes through "
                             "links (remove it and retry)") from None
        raise


class Dir:
    """An open folder; every name below it is reached without following links."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path, create: bool = False, anchor: Path | None = None) -> "Dir":
        """`path` itself must not be a link; nor may any folder between `anchor` (a folder that contains it) and it.

        Without `anchor` the parents of `path` are trusted (they are the operator's: the home, --out's folder).
        """
        path = Path(os.path.abspath(path))
        if anchor is not None and Path(os.path.abspath(anchor)) != path:
            rel = path.relative_to(os.path.abspath(anchor)).as_posix()
            with cls.open(Path(anchor), create) as top:
                return top.sub(rel, create)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return cls(_open_child(parent, path.name, create, str(path.parent)), path)
        finally:
            os.close(parent)

    def __enter__(self) -> "Dir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def sub(self, rel: str, create: bool = False) -> "Dir":
        fd = os.dup(self.fd)
        try:
            for part in check_rel(rel, "folder"):
                nxt = _open_child(fd, part, create, str(self.path))
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return Dir(fd, self.path / rel)

    def kind(self, name: str) -> int | None:
        """The lstat mode of `name` (None when it does not exist)."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None

    def chmod(self, mode: int) -> None:
        os.fchmod(self.fd, mode)

    def write(self, rel: str, data: bytes | str, mode: int = 0o644, durable: bool = False) -> None:
        """Create or replace the file `rel` (temp + rename; links on the way are refused, at the end replaced)."""
        parts = check_rel(rel, "file")
        body = data.encode() if isinstance(data, str) else data
        parent = self.sub("/".join(parts[:-1]), create=True) if len(parts) > 1 else Dir(os.dup(self.fd), self.path)
        with parent:
            name = parts[-1]
            tmp = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent.fd)
            try:
                try:
                    view = memoryview(body)
                    while view:
                        view = view[os.write(fd, view):]
                    if durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.rename(tmp, name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
                except OSError as exc:
                    if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    raise UnsafePath(f"{rel!r} in {self.path} is a folder, not a file; remove it") from None
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=parent.fd)
                except OSError:
                    pass
                raise
            if durable:
                os.fsync(parent.fd)

    def read(self, rel: str, limit: int | None = None) -> bytes:
        """The bytes of regular file `rel` (at most `limit` + 1 of them); UnsafePath for links, FIFOs, devices."""
        parts = check_rel(rel, "file")
        parent = self.sub("/".join(parts[:-1])) if len(parts) > 1 else Dir(os.dup(self.fd), self.path)
        with parent:
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent.fd)
            except OSError as exc:
                if exc.errno in _LINK_ERRNOS:
                    raise UnsafePath(f"{rel!r} in {self.path} is a symbolic link; tracekit never reads through links") from None
                raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePath(f"{rel!r} in {self.path} is not a regular file")
            chunks, got = [], 0
            while limit is None or got <= limit:
                chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        """Delete `name` (a whole tree for a folder) without following any link; absent is fine."""
        check_rel(name, "name")
        mode = self.kind(name)
        if mode is None:
            return
        if not stat.S_ISDIR(mode):
            os.unlink(name, dir_fd=self.fd)
            return
        for _, _, _, fd in os.fwalk(name, dir_fd=self.fd):  # read-only folders (context/) must be emptied too
            try:
                os.fchmod(fd, 0o700)
            except OSError:
                pass
        shutil.rmtree(name, dir_fd=self.fd)


def write_file(path: Path, data: bytes | str, mode: int = 0o644, durable: bool = False, anchor: Path | None = None) -> None:
    """Replace `path` without following a link at its name or at any folder below `anchor` (see `Dir.open`)."""
    path = Path(path)
    with Dir.open(path.parent, create=True, anchor=anchor) as d:
        d.write(path.name, data, mode=mode, durable=durable)


def remove_tree(path: Path, anchor: Path | None = None) -> None:
    """Delete `path` (file, link or tree) without following links (nor folders below `anchor`); absent is fine."""
    path = Path(path)
    try:
        d = Dir.open(path.parent, anchor=anchor)
    except FileNotFoundError:
        return
    with d:
        d.remove(path.name)


def own_dir(path: Path, anchor: Path | None = None) -> Path:
    """Make `path` a real folder: a link (or file) found at its name is removed, not followed; returns `path`.

    For the folders only tracekit writes in (work/, scratch/, context/, experiments/<id>/): a link a
    command proposer left there is undone instead of stopping the loop.
    """
    path = Path(path)
    with Dir.open(path.parent, create=True, anchor=anchor) as d:
        mode = d.kind(path.name)
        if mode is not None and not stat.S_ISDIR(mode):
            d.remove(path.name)
        try:
            os.mkdir(path.name, 0o755, dir_fd=d.fd)
        except FileExistsError:
            pass
    return path


def copy_tree(src: Path, dst: Path, exclude: tuple[str, ...] = (), hardlink: bool = False,
              skip: tuple[str, ...] = ()) -> None:
    """Copy folder `src` to the new folder `dst`: links copied as links, FIFOs/devices skipped, names in `exclude` skipped.

    `skip` holds paths relative to `src` (a target's sealed files) left out wherever they are.
    With `hardlink`, regular files are hard-linked (falling back to a copy across file systems).
    """
    with Dir.open(src) as s:
        parent = Path(dst).parent
        parent.mkdir(parents=True, exist_ok=True)
        with Dir.open(parent) as p:
            os.mkdir(Path(dst).name, 0o700, dir_fd=p.fd)
            with p.sub(Path(dst).name) as d:
                _copy(s.fd, d.fd, exclude, hardlink, frozenset(skip), "")
                os.fchmod(d.fd, stat.S_IMODE(os.fstat(s.fd).st_mode))


def _copy(sfd: int, dfd: int, exclude: tuple[str, ...], hardlink: bool, skip: frozenset[str], prefix: str) -> None:
    for name in os.listdir(sfd):
        if any(fnmatch(name, pat) for pat in exclude) or prefix + name in skip:
            continue
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            s2, d2 = _open_child(sfd, name, False, name), _open_child(dfd, name, False, name)
            try:
                _copy(s2, d2, exclude, hardlink, skip, prefix + name + "/")
                os.fchmod(d2, stat.S_IMODE(st.st_mode))
            finally:
                os.close(s2)
                os.close(d2)
        elif stat.S_ISREG(st.st_mode):
            if hardlink:
                try:
                    os.link(name, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                    continue
                except OSError:
                    pass
            _copy_file(sfd, dfd, name, st)


def _copy_file(sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sfd)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      stat.S_IMODE(st.st_mode) | 0o200, dir_fd=dfd)
        try:
            while os.sendfile(dst, src, None, 1 << 24):
                pass
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)
