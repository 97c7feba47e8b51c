"""Durable file writes shared by the store, the collector and the optimizer.

    atomic_write_text(folder / "run.json", json.dumps(meta))   # all or nothing; on disk when it returns
    fsync_path(folder)                                          # make names added, renamed or removed in it durable

`atomic_write_text` writes a sibling `<name>.tmp` and renames it over `path`, so a reader (or a
crash) sees the old content or the new one, never half of it. With `durable=True` the content is
fsynced before the rename and, with `sync_dir=True`, the folder after it (the new name survives a
power cut); `durable=False` keeps only the atomicity, for files that are regenerated anyway.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a folder by path (a folder: its entries, i.e. creates, renames and unlinks in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, *, durable: bool = True, sync_dir: bool = True) -> None:
    """Replace `path` with `text` atomically (via `<name>.tmp`); see the module docstring for `durable`/`sync_dir`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable and sync_dir:
        fsync_path(path.parent)
