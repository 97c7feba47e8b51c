"""The local Parquet store: one folder per table under the home, written without locks.

Layout (``TRACEKIT_HOME``, default ``./.tracekit``)::

    spans/20261126T031500-4242-1a2b3c4d.parquet     one file per flush, per process
    spans/c-20261126T040000-9f8e7d6c.parquet        written by compaction (sorted by trace_id)
    experiments/...                                 other tables, same rules

Writers never touch another writer's file: each flush writes ``<name>.parquet.tmp`` and renames it
into place (rename is atomic on POSIX), so readers see whole files or nothing, and any number of
processes (sandboxed runs included) write at once. Compaction takes a lock that only compactors
share, writes the merged file, records ``{output, sources}`` in a journal, renames the output into
place, deletes the sources and then the journal. A crash anywhere in that sequence is rolled
forward (or back) by the next compaction (`Store.recover`), so no row is lost or doubled; readers
meanwhile hide the sources a finished merge already holds. Reading never deletes or writes
anything: the collector's SQL runs where it cannot (see `tracekit/_util/landlock.py`).

The journal is data on disk, so it is checked before it is believed: its names must be plain file
names of its own folder in the store's own pattern, the output a compaction's `c-` name, and a
roll-forward deletes sources only if the output is a regular Parquet file holding at least as
many rows. A journal that fails a check is ignored, logged and returned as a problem.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from .._util.fsio import atomic_write_text, fsync_path
from ._conform import conform, read_file
from ._journal import FILE_NAME, JOURNAL, read_journal
from ._schema import Table
from ._tables import get_table

if TYPE_CHECKING:
    import pyarrow as pa

LOCK = ".compact.lock"
DEFAULT_HOME = ".tracekit"

log = logging.getLogger("tracekit.store")


def default_home(env: Mapping[str, str] | None = None, *, target: Path | None = None) -> Path:
    """The one rule for where a store lives: `TRACEKIT_HOME` (from `env`, default the process
    environment), else `./.tracekit`; for an optimizer target, `<target>/.tracekit` (its own store)."""
    if target is not None:
        return Path(target) / DEFAULT_HOME
    return Path((os.environ if env is None else env).get("TRACEKIT_HOME") or DEFAULT_HOME)


def _new_name(prefix: str = "") -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{prefix}{stamp}-{os.getpid()}-{secrets.token_hex(4)}.parquet"


@dataclass(frozen=True)
class CompactReport:
    table: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int


class Store:
    """A tracekit home folder. Cheap to create; holds no open files."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    def table_dir(self, table: str) -> Path:
        return self.home / table

    def missing(self) -> str | None:
        """Why no store is at `home` (None when one is). A folder that exists is a store, even empty (as
        right after `configure()`); a folder that does not exist, a file, or a folder that holds no table
        but a `.tracekit` store inside is a wrong path, and every table would read empty without a word."""
        from ._tables import all_tables

        if not self.home.exists():
            return f"no tracekit store at {self.home.resolve()} (the folder does not exist)"
        if not self.home.is_dir():
            return f"no tracekit store at {self.home.resolve()} (it is a file, not a folder)"
        inner = self.home / DEFAULT_HOME
        if inner.is_dir() and not any(self.table_dir(t).is_dir() for t in all_tables()):
            return f"no tracekit tables in {self.home.resolve()}; the store is its {DEFAULT_HOME} folder ({inner.resolve()})"
        return None

    def where_hint(self) -> str:
        """What to do about `missing()`: the same advice everywhere a store is read."""
        return "point at your store with --home PATH or TRACEKIT_HOME (in Python: tracekit.query(sql, home=PATH))"

    def warn_if_missing(self, stacklevel: int = 2) -> None:
        """A `StoreWarning` when `missing()`: for the doors users read through (`tracekit.query()`, the CLI's
        read commands), not for internal lookups that precede a first write (those create the store)."""
        problem = self.missing()
        if problem is not None:
            import warnings

            from .._errors import StoreWarning

            warnings.warn(f"{problem}, so every table reads empty; {self.where_hint()}", StoreWarning,
                          stacklevel=stacklevel + 1)

    # -- writing ---------------------------------------------------------------------------

    def write(
        self, table: str, data: "pa.Table | Sequence[Mapping[str, Any]]", *, durable: bool = False, name: str | None = None
    ) -> Path | None:
        """Write rows as one new Parquet file of `table`; returns its path (None for no rows).

        `data` is an Arrow table or a list of row dicts; columns are conformed to the table's
        schema (missing ones become null, unknown ones are an error). `durable=True` fsyncs the
        file and the folder before returning. `name` (``<name>.parquet``, unique, no ``c-`` prefix)
        lets a writer record where rows came from (the collector names files by WAL segment).
        """
        if name is not None and (not FILE_NAME.fullmatch(name) or name.startswith("c-")):
            raise StoreError(f"file name {name!r}: use a plain '<name>.parquet' of letters, digits, '_', '-' (no folders, no 'c-' or '.' prefix)")
        spec = get_table(table)
        arrow = conform(spec, data)
        if arrow.num_rows == 0:
            return None
        return self._write_file(spec, arrow, name or _new_name(), durable=durable)

    def _write_file(self, spec: Table, arrow: "pa.Table", name: str, *, durable: bool) -> Path:
        import pyarrow.parquet as pq

        folder = self.table_dir(spec.name)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / name
        tmp = folder / (name + ".tmp")
        try:
            pq.write_table(arrow, tmp, compression="zstd", row_group_size=64 * 1024)
            if durable:
                fsync_path(tmp)
            os.replace(tmp, final)
            if durable:
                fsync_path(folder)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    # -- reading ---------------------------------------------------------------------------

    def files(self, table: str) -> list[Path]:
        """The Parquet files that make up `table` now (sources of a finished compaction excluded).

        Only reads: a journal left by an interrupted compaction is settled by `recover`, not here.
        """
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        hidden: set[str] = set()
        if (folder / JOURNAL).exists():  # a compaction between rename and delete: its output already holds these rows
            entry, problem = read_journal(folder)
            if entry is not None and entry.output_complete:
                hidden = set(entry.sources)
            elif problem:
                log.warning("tracekit store: %s", problem)
        return sorted(p for p in folder.glob("*.parquet") if p.name not in hidden)

    def row_count(self, table: str) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files(table))

    def read(self, table: str) -> "pa.Table":
        """All rows of `table` as one Arrow table in the current schema."""
        import pyarrow as pa

        spec = get_table(table)
        parts = [read_file(spec, p) for p in self.files(table)]
        if not parts:
            return spec.arrow_schema().empty_table()
        return pa.concat_tables(parts)

    # -- importing files written elsewhere (sandbox spools) -----------------------------------

    def ingest(self, table: str, paths: Iterable[Path], *, overrides: Mapping[str, Any] | None = None,
               max_rows: int = 10**9, max_bytes: int = 2**40) -> int:
        """Validate Parquet files written elsewhere and copy their rows in; returns rows added.

        Every file is read and conformed first (a bad file raises StoreError naming it and nothing
        is written): never through a symlink, FIFO or device, and within `max_rows` rows and
        `max_bytes` decoded bytes over all files (see `tracekit.store._capped_parquet`; a cut raises
        too). `overrides` sets columns on every row (e.g. the run's experiment_id).
        """
        import pyarrow as pa

        from .._util.saferead import SafeDir, UnsafePath
        from ._capped_parquet import Budget, read_capped

        spec = get_table(table)
        budget = Budget(rows=max_rows, bytes=max_bytes)
        parts = []
        for p in paths:
            p = Path(p)
            try:
                with SafeDir.open(p.parent) as folder:
                    data = folder.read(p.name, budget.bytes)
            except (OSError, UnsafePath) as exc:
                raise StoreError(f"{p}: {exc}; tracekit only ingests regular files") from None
            t, cut = read_capped(spec, data, budget, str(p))
            if cut:
                raise StoreError("; ".join(cut))
            for col, value in (overrides or {}).items():
                idx = t.schema.get_field_index(col)
                t = t.set_column(idx, col, pa.array([value] * t.num_rows, type=t.schema.field(col).type))
            parts.append(t)
        if not parts:
            return 0
        merged = pa.concat_tables(parts)
        if merged.num_rows:
            self._write_file(spec, merged, _new_name(), durable=True)
        return merged.num_rows

    # -- compaction --------------------------------------------------------------------------

    def compact(self, table: str, *, min_files: int = 2, target_bytes: int = 128 * 1024 * 1024) -> CompactReport:
        """Merge the table's small files into one, sorted by its key; every row kept exactly once."""
        import pyarrow as pa

        spec = get_table(table)
        folder = self.table_dir(table)
        if not folder.is_dir():
            return CompactReport(table, 0, 0, 0, 0)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._settle(folder)
            files = self.files(table)
            small = [p for p in files if p.stat().st_size < target_bytes]
            rows_before = self.row_count(table)
            if len(small) < min_files:
                return CompactReport(table, len(files), len(files), rows_before, rows_before)
            merged = pa.concat_tables([read_file(spec, p) for p in small])
            if spec.key:
                merged = merged.sort_by([(k, "ascending") for k in spec.key])
            name = _new_name("c-")
            tmp = folder / (name + ".tmp")
            import pyarrow.parquet as pq

            pq.write_table(merged, tmp, compression="zstd", row_group_size=64 * 1024)
            fsync_path(tmp)
            atomic_write_text(folder / JOURNAL, json.dumps({"output": name, "sources": [p.name for p in small]}),
                              sync_dir=False)  # the folder is synced once the output is in place
            os.replace(tmp, folder / name)
            fsync_path(folder)
            for p in small:
                p.unlink(missing_ok=True)
            (folder / JOURNAL).unlink(missing_ok=True)
            fsync_path(folder)
            after = self.files(table)
            rows_after = self.row_count(table)
        if rows_after != rows_before:  # pragma: no cover - would be a bug; say so loudly
            raise StoreError(f"compaction of {table!r} changed the row count: {rows_before} -> {rows_after}")
        return CompactReport(table, len(files), len(after), rows_before, rows_after)

    def recover(self, table: str) -> list[str]:
        """Finish or undo a compaction of `table` that was interrupted; returns problems found.

        For writers (compaction, the collector at start), never for readers: it deletes files.
        Skipped while a compactor holds the lock (its journal is its own business).
        """
        folder = self.table_dir(table)
        if not (folder / JOURNAL).exists():
            return []
        try:
            lock = open(folder / LOCK, "a+")
        except OSError as exc:
            return [f"{folder / LOCK}: cannot open the compaction lock ({exc.strerror})"]
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # a compactor is at work; files() hides its sources meanwhile
            return self._settle(folder)

    def _settle(self, folder: Path) -> list[str]:
        """Roll an interrupted compaction forward or back; the caller holds the compaction lock."""
        journal = folder / JOURNAL
        if not journal.exists():
            return []
        entry, problem = read_journal(folder)
        if entry is None:  # not a journal this store wrote: touch no data file, drop only the journal
            log.warning("tracekit store: %s; removed it and left every data file alone", problem)
            journal.unlink(missing_ok=True)
            fsync_path(folder)
            return [problem]
        if entry.output_complete:
            for s in entry.sources:
                (folder / s).unlink(missing_ok=True)
        elif (folder / entry.output).exists() or (folder / entry.output).is_symlink():
            raise StoreError(
                f"{journal}: its output {entry.output} is not a Parquet file holding the rows of its sources; "
                "left every file and the journal in place: inspect the folder, then remove the journal"
            )
        else:
            (folder / (entry.output + ".tmp")).unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        fsync_path(folder)
        return []

    def info(self) -> dict[str, dict[str, int]]:
        """Per table: files, rows and bytes."""
        from ._tables import all_tables

        out: dict[str, dict[str, int]] = {}
        for name in sorted(all_tables()):
            files = self.files(name)
            if not files:
                continue
            out[name] = {
                "files": len(files),
                "rows": self.row_count(name),
                "bytes": sum(p.stat().st_size for p in files),
            }
        return out
