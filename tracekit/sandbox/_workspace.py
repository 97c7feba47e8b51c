"""The run's folder: a fresh copy of the workspace, snapshots to list what the run changed, disk use.

    run_dir/
      workspace/     the candidate's copy (its working directory, writable)
      io/            writable: result.json ($TRACEKIT_RESULT), spool/ ($TRACEKIT_HOME), otlp/
      tmp/           temporary folder for backends that cannot mount one
      stdout.log  stderr.log  spec.json  run.json
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._errors import SandboxError

Snapshot = dict[str, tuple[str, int, int, int]]  # relpath -> (type, size, mtime_ns, ctime_ns)


def prepare(run_dir: Path, source: Path | None, exclude: Sequence[str]) -> tuple[Path, Path, Path]:
    """Create the run folder layout and copy `source` into it; returns (workspace, io, tmp)."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SandboxError(f"run_dir {run_dir} exists and is not empty; give a new folder (or None for a fresh one)")
    run_dir.mkdir(parents=True, exist_ok=True)
    workspace, io_dir, tmp = run_dir / "workspace", run_dir / "io", run_dir / "tmp"
    if source is not None:
        src = Path(source).resolve()
        if run_dir.resolve().is_relative_to(src):
            raise SandboxError(f"run_dir {run_dir} is inside the workspace {src}; put runs elsewhere")

        def ignore(folder: str, names: list[str]) -> set[str]:
            return {n for n in names if any(fnmatch.fnmatch(n, pat) for pat in exclude)}

        try:
            shutil.copytree(src, workspace, symlinks=True, ignore=ignore)
        except (OSError, shutil.Error) as exc:
            raise SandboxError(f"cannot copy workspace {src} to {workspace}: {exc}") from exc
    else:
        workspace.mkdir()
    for d in (io_dir, io_dir / "spool", io_dir / "otlp", tmp):
        d.mkdir()
    tmp.chmod(0o1777)
    return workspace, io_dir, tmp


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


def snapshot(root: Path) -> Snapshot:
    """Every file and symlink under `root` (relative path -> type, size, mtime, ctime); no symlinks followed."""
    out: Snapshot = {}
    for e, st in _walk([root]):
        if stat.S_ISDIR(st.st_mode):
            continue
        kind = "link" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        out[os.path.relpath(e.path, root)] = (kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Relative paths added, deleted or modified (size, times or type differ), sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def disk_usage(paths: Sequence[Path]) -> int:
    """Bytes allocated under `paths` (st_blocks), not following symlinks."""
    return sum(st.st_blocks * 512 for _, st in _walk(paths))
