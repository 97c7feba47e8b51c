"""The run's folder: the workspace copy, snapshots that list what the run changed, the copy-out.

    run_dir/
      seed/          isolated backends: the workspace's first contents (read-only inside, copied in)
      workspace/     the candidate's copy: live (local backend) or copied out after the run
      io/            result.json ($TRACEKIT_RESULT), spool/ ($TRACEKIT_HOME), otlp/: same
      tmp/           the local backend's temporary folder; the unshare backend's mount point
      stdout.log  stderr.log  spec.json  run.json

With an isolated backend the run writes only to its own tmpfs (`/sandbox` inside), which the
kernel caps at `disk_mb`. The harness reads it through `/proc/<init>/root` while the init holds
the namespaces open, after every process of the run has ended: one directory descriptor at a
time, never following a symlink, within a byte, file and depth budget, so nothing the run
planted (a link to `/`, a FIFO, a million files, a path deeper than PATH_MAX) reaches the host.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import SandboxError

Snapshot = dict[str, tuple[str, int, int, int]]  # relpath -> (type, size, mtime_ns, ctime_ns)
MAX_FILES = 100_000
MAX_DEPTH = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Folders:
    run_dir: Path
    seed: Path
    workspace: Path
    io: Path
    tmp: Path


def prepare(run_dir: Path, source: Path | None, exclude: Sequence[str], *, isolated: bool,
            owner: int | None = None, warm: Path | None = None) -> Folders:
    """Create the run folder and copy `source` into it (`seed/` or, unisolated, `workspace/`).

    `warm`: the folder of a warm sandbox (`_warm.Slot.dir`) whose `seed/` and `tmp/` it already
    bound: the run's `seed` and `tmp` are those."""
    src = Path(source).resolve() if source is not None else None
    if src is not None and would_copy(run_dir.resolve(), src, exclude):  # checked before anything is created
        raise SandboxError(f"run_dir {run_dir} is inside the workspace {src}, which would be copied into itself; "
                           f"put runs elsewhere or under a folder the copy skips ({', '.join(exclude)})")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SandboxError(f"run_dir {run_dir} exists and is not empty; give a new folder (or None for a fresh one)")
    run_dir.mkdir(parents=True, exist_ok=True)
    base = warm if warm is not None else run_dir
    f = Folders(run_dir, base / "seed", run_dir / "workspace", run_dir / "io", base / "tmp")
    first = f.seed if isolated else f.workspace
    if src is not None:

        def ignore(folder: str, names: list[str]) -> set[str]:
            return {n for n in names if _excluded(n, exclude)}

        try:
            shutil.copytree(src, first, symlinks=True, ignore=ignore, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:
            raise SandboxError(f"cannot copy workspace {src} to {first}: {exc}") from exc
    else:
        first.mkdir(exist_ok=True)
    f.tmp.mkdir(exist_ok=True)
    if isolated:
        if owner is not None:  # the run's unprivileged uid must be able to read its own files
            for dirpath, dirnames, filenames in os.walk(first):
                for name in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
                    os.chown(name, owner, owner, follow_symlinks=False)
    else:
        for d in (f.io, f.io / "spool", f.io / "otlp"):
            d.mkdir()
        f.tmp.chmod(0o1777)
    return f


def _excluded(name: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in exclude)


def would_copy(path: Path, src: Path, exclude: Sequence[str]) -> bool:
    """Whether copying `src` (skipping names that match `exclude`, at any depth) would copy `path`: a
    run folder under the workspace is safe only inside a skipped folder (e.g. the store's `.tracekit`)."""
    if not path.is_relative_to(src):
        return False
    return not any(_excluded(part, exclude) for part in path.relative_to(src).parts)


# -- host paths (the local backend's live folders, the seed) -------------------------------------


def _walk(roots: Sequence[Path]) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Every entry under `roots` (folders too) with its lstat; symlinks not followed, unreadable entries skipped."""
    stack = list(roots)
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(e.path))
            yield e, st


def _entry(st: os.stat_result) -> tuple[str, int, int, int]:
    kind = "link" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    return kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def snapshot(root: Path) -> Snapshot:
    """Every file and symlink under `root` (relative path -> type, size, mtime, ctime); no symlinks followed."""
    return {os.path.relpath(e.path, root): _entry(st) for e, st in _walk([root]) if not stat.S_ISDIR(st.st_mode)}


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Relative paths added, deleted or modified (size, times or type differ), sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def disk_usage(paths: Sequence[Path]) -> int:
    """Bytes allocated under `paths` (st_blocks), not following symlinks."""
    return sum(st.st_blocks * 512 for _, st in _walk(paths))


# -- the run's tmpfs, through a directory descriptor ---------------------------------------------


@dataclass
class Budget:
    files: int = MAX_FILES
    bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def open_dir(base_fd: int, rel: str) -> int:
    """Open folder `rel` below `base_fd` one component at a time, refusing symlinks anywhere."""
    fd = os.dup(base_fd)
    try:
        for part in [p for p in rel.split("/") if p not in ("", ".")]:
            if part == "..":
                raise OSError(1, "'..' in a sandbox path")
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def walk_fd(dir_fd: int, budget: Budget, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, int, os.stat_result]]:
    """(relative path, parent fd, lstat) of everything below `dir_fd`; folders before their contents.

    The parent fd is valid while the caller handles the entry. Stops at `budget.files` entries and
    `MAX_DEPTH` levels (noted in the budget)."""
    try:
        entries = os.scandir(dir_fd)
    except OSError:
        return
    with entries:
        names = []
        for entry in entries:  # lazily: a folder of a million names stops at the budget
            if budget.files <= 0:
                budget.note(f"more than {MAX_FILES} entries: the rest were not read")
                break
            budget.files -= 1
            names.append(entry.name)
    for name in sorted(names):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        rel = prefix + name
        yield rel, dir_fd, st
        if stat.S_ISDIR(st.st_mode):
            if depth + 1 >= MAX_DEPTH:
                budget.note(f"folders nested deeper than {MAX_DEPTH} levels were not read")
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                yield from walk_fd(sub, budget, rel + "/", depth + 1)
            finally:
                os.close(sub)


def snapshot_fd(dir_fd: int) -> Snapshot:
    return {rel: _entry(st) for rel, _, st in walk_fd(dir_fd, Budget()) if not stat.S_ISDIR(st.st_mode)}


def copy_out(dir_fd: int, dest: Path, max_bytes: int, *, symlinks: bool = True) -> list[str]:
    """Copy the tree below `dir_fd` to the new folder `dest`: folders, regular files (mode and mtime
    kept, set-id bits dropped) and, with `symlinks`, symlinks as links; nothing else. Returns notes."""
    budget = Budget(bytes=max_bytes)
    dest.mkdir(exist_ok=False)
    for rel, parent, st in walk_fd(dir_fd, budget):
        target = dest / rel
        name = rel.rsplit("/", 1)[-1]
        try:
            if stat.S_ISDIR(st.st_mode):
                target.mkdir(mode=0o755)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(parent, name, target, st, budget)
            elif stat.S_ISLNK(st.st_mode) and symlinks:
                os.symlink(os.readlink(name, dir_fd=parent), target)
            else:
                budget.note(f"{'symlinks' if stat.S_ISLNK(st.st_mode) else 'special files'} were not copied ({rel})")
        except OSError as exc:
            budget.note(f"{rel}: not copied ({exc.strerror})")
    return budget.notes


def _copy_file(parent: int, name: str, target: Path, st: os.stat_result, budget: Budget) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while budget.bytes > 0:
                chunk = os.read(fd, min(1 << 20, budget.bytes))
                if not chunk:
                    break
                budget.bytes -= len(chunk)
                os.write(out, chunk)
            if budget.bytes <= 0 and os.read(fd, 1):
                budget.note("the run's files exceed the copy budget: the last ones were cut short")
            os.fchmod(out, st.st_mode & 0o777)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(fd)
