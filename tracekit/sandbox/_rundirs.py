"""Where a run's folder goes when the spec names none: under the store, with a retention rule.

    <home>/sandbox/runs/<run id>/      the workspace copy, logs, spec.json, run.json

A run folder holds what a user looks at after a run (its logs, what it changed), so it lives with
the store that holds the run's trace instead of in the system temp folder, where nothing removes
it and nothing points at it. Each new run deletes the oldest finished folders beyond the
`KEEP_RUNS` newest. A run holds an exclusive lock on its own folder (`flock` on the directory)
while it goes, and a folder whose lock is held is never deleted, so a long run outlives any number
of short ones. Only plain folders named like a run id are touched: a link or a stray file planted
in `runs/` is left alone, and `shutil.rmtree` never follows a link inside a folder it deletes.

The store may live inside the workspace (`./.tracekit` under the current folder, the default of
`tracekit sandbox run`). The copy skips `.tracekit` (the spec's `copy_exclude`), so the run folder
is safe there; if the store is inside the workspace and would be copied, the folder goes to the
system temp folder instead (a run folder must never be inside its own copy).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import _workspace

KEEP_RUNS = 20
RUN_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}$")  # new_run_id()
log = logging.getLogger("tracekit.sandbox")


def runs_folder(home: Path) -> Path:
    return home / "sandbox" / "runs"


def new_run_dir(home: Path, run_id: str, workspace: Path | None, exclude: Sequence[str]) -> Path:
    """A fresh, empty folder for run `run_id` (see the module docstring); older finished ones pruned."""
    base = runs_folder(home.resolve())
    if workspace is not None and _workspace.would_copy(base, Path(workspace).resolve(), exclude):
        return Path(tempfile.mkdtemp(prefix=f"tracekit-run-{run_id}-"))
    base.mkdir(parents=True, exist_ok=True)
    prune(base, KEEP_RUNS - 1)
    run_dir = base / run_id
    run_dir.mkdir()
    return run_dir


def hold(run_dir: Path) -> int:
    """Lock `run_dir` for the run's duration (pruning skips it); returns the fd to pass to `let_go`."""
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def let_go(fd: int) -> None:
    os.close(fd)  # closing the last descriptor releases the lock


def prune(base: Path, keep: int) -> list[str]:
    """Delete the oldest run folders of `base` beyond the `keep` newest, skipping any still running."""
    try:
        names = sorted(e.name for e in os.scandir(base) if RUN_NAME.match(e.name) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    removed = []
    for name in names[: max(len(names) - keep, 0)]:
        path = base / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # gone, or replaced by a link since the listing
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a run still going
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, onerror=lambda *a: log.warning("tracekit sandbox: could not delete %s", a[1]))
            removed.append(name)
        finally:
            os.close(fd)
    return removed
