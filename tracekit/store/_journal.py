"""The compaction journal: `{output, sources}` written before a merge deletes its sources.

It is data on disk, so it is checked before it is believed (see `Store.recover`): names must be
plain file names of its own folder in the store's pattern, the output a compaction's `c-` name,
and the output counts as complete only as a regular Parquet file holding at least the sources' rows.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._util.jsonutil import loads_limited

JOURNAL = "_compaction.json"
# The store's file names: plain names in their table's folder (flushes, `w-` folds, `c-` merges).
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_=+-]*(\.[A-Za-z0-9_=+-]+)*\.parquet")
MAX_JOURNAL_BYTES = 4 << 20


@dataclass(frozen=True)
class JournalEntry:
    output: str
    sources: tuple[str, ...]
    output_complete: bool  # the output is in place and holds at least the sources' rows


def read_journal(folder: Path) -> tuple[JournalEntry | None, str]:
    """The compaction journal of `folder`, checked; (None, problem) when it is not one to believe.

    Names must be plain file names of this folder in the store's pattern (no '/', no '..', not
    absolute; the output a `c-` merge name, never a source); the output counts as complete only as
    a regular Parquet file with at least as many rows as the sources still present.
    """
    journal = folder / JOURNAL
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, f"{journal}: not a regular file; ignored it"
            raw = os.read(fd, MAX_JOURNAL_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return None, f"{journal}: cannot read it ({exc.strerror}); ignored it"
    if len(raw) > MAX_JOURNAL_BYTES:
        return None, f"{journal}: over {MAX_JOURNAL_BYTES} bytes; not a journal this store wrote, ignored it"
    try:
        j = loads_limited(raw, max_depth=3)
        output, sources = j["output"], j["sources"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None, f"{journal}: not a compaction journal (expected {{\"output\", \"sources\"}}); ignored it"
    names = [output, *sources] if isinstance(sources, list) else [output, sources]
    bad = [n for n in names if not isinstance(n, str) or not FILE_NAME.fullmatch(n)]
    if bad or not output.startswith("c-") or output in sources:
        shown = ", ".join(repr(n)[:80] for n in (bad or [output])[:3])
        return None, (f"{journal}: names {shown} are not plain file names of this folder "
                      "(a merge's output is 'c-<time>-<pid>-<hex>.parquet'); ignored it and deleted nothing")
    return JournalEntry(output, tuple(sources), _holds_sources(folder, output, sources)), ""


def _holds_sources(folder: Path, output: str, sources: Sequence[str]) -> bool:
    import pyarrow.parquet as pq

    def rows(name: str) -> int | None:
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                return int(pq.ParquetFile(f).metadata.num_rows)
        except Exception:
            return None
        finally:
            os.close(fd)

    have = rows(output)
    if have is None:
        return False
    present = [r for r in (rows(s) for s in sources) if r is not None]
    return have >= sum(present)
