"""Read-only SQL over the store for HTTP clients: what may run, and the locked-down DuckDB that runs it.

    engine = Engine(home, SqlLimits())              # inside the SQL worker process (see _sqlworker)
    run = engine.open("SELECT name, count(*) FROM spans GROUP BY 1", cap=100)
    for batch in run: ...                           # Arrow batches, at most `cap` rows; run.truncated
    check_statement(con, "EXPLAIN ANALYZE COPY ...") # SqlRefused (HTTP 403)

The collector never runs a client's SQL in its own process: `_sqlpool` hands it to a worker that has
made itself unable to write anywhere. Three independent fences, each enough on its own for files:

1. Statement validation by DuckDB's own parser (`check_statement`): exactly one statement, of type
   SELECT (which covers WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE), or EXPLAIN of one plain
   SELECT without ANALYZE (EXPLAIN ANALYZE runs what it explains) and without options. COPY,
   ATTACH, INSTALL, LOAD, SET, PRAGMA, CALL, CREATE, INSERT, EXPORT, DROP ... are refused before
   anything runs. This is also the fence for the in-memory catalog (the views), which files do not
   hold.
2. DuckDB's own security settings, applied once after the views exist: `allowed_directories` = the
   store's table folders, `enable_external_access = false` (no other file, no network, no ATTACH,
   no INSTALL/LOAD), no extension autoloading, no temp directory (no spilling to disk), a
   `memory_limit`, and `lock_configuration = true` so no statement can change any of it.
3. The kernel: the worker process restricted itself with Landlock before importing DuckDB
   (`tracekit/_util/landlock.py`: read-only everywhere, no file created, written, truncated, renamed or
   deleted, no TCP), with a data-size rlimit and a zero file-size rlimit on top.

Each query runs in its own cursor with a timer that interrupts it at the time limit; rows stream
out in batches and stop at the row limit or the byte limit (then `truncated`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import QueryError
from ..store._database import COMPACTION_RETRIES, Database

if TYPE_CHECKING:
    import pyarrow as pa

SCOPE = "the SQL endpoint only reads the store's tables and views (spans, traces, ...)"
ALLOWED_HINT = "with a single SELECT (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN SELECT are fine)"
SLICE_BYTES = 4 << 20  # batches are cut to about this many Arrow bytes before they are encoded


class SqlRefused(QueryError):
    """The statement is not allowed here: not a single read-only SELECT, or it reaches outside the store."""


class SqlTimeout(QueryError):
    """The query ran past the time limit and was interrupted."""


class SqlBusy(QueryError):
    """Every SQL worker is busy past the queue timeout (HTTP 503 with Retry-After)."""


class SqlWorkerFailed(QueryError):
    """The SQL worker died or broke the protocol while answering (it is replaced)."""


@dataclass(frozen=True)
class SqlLimits:
    max_rows: int = 100_000  # the most rows one response may carry
    default_rows: int = 10_000  # when the request names no limit
    timeout: float = 30.0  # seconds for the whole answer: execution, encoding and sending
    max_bytes: int = 256 << 20  # Arrow bytes of one response: past it the rows stop (truncated)
    memory_limit: str = "1GB"  # DuckDB's memory_limit in each worker (the kernel cap is derived from it)
    threads: int = 2
    workers: int = 2  # queries answered at once (one worker process each)
    queue_timeout: float = 10.0  # seconds a query waits for a free worker before 503
    recycle_mb: int = 64  # a worker that sent an answer over this (or grew 4x this) is replaced: memory back to the OS


def check_statement(con: Any, sql: str, describe: Callable[[], str] | None = None) -> None:
    """Refuse anything but one SELECT or EXPLAIN SELECT (SqlRefused); unparsable SQL is a QueryError
    (with the tables and columns from `describe`, to help fix it)."""
    import duckdb

    if not sql.strip():
        raise QueryError("empty SQL; send e.g. {\"sql\": \"SELECT name, count(*) FROM spans GROUP BY 1\"}")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"{exc}\n\n{describe()}" if describe else str(exc)) from None
    if len(statements) != 1:
        raise SqlRefused(f"refused: send exactly one statement (got {len(statements)}); {SCOPE}")
    kind = statements[0].type.name
    if kind == "EXPLAIN":
        _check_explain(con, statements[0].query)
    elif kind != "SELECT":
        raise SqlRefused(f"refused: {kind} statements are not allowed; {SCOPE} {ALLOWED_HINT}")


def _check_explain(con: Any, text: str) -> None:
    """EXPLAIN passes only as `EXPLAIN <one plain SELECT>`: never ANALYZE (it executes the statement)."""
    import duckdb

    tokens = [(start, kind) for start, kind in duckdb.tokenize(text) if kind.name != "comment"]
    ends = [start for start, _ in tokens[1:]] + [len(text)]
    words = [text[start:end].strip().upper() for (start, _), end in zip(tokens, ends)]
    if any(w.startswith(("ANALYZE", "ANALYSE")) for w, (_, kind) in zip(words, tokens) if kind.name == "keyword"):
        raise SqlRefused(f"refused: EXPLAIN ANALYZE runs the statement it explains; send EXPLAIN SELECT ...; {SCOPE}")
    if len(tokens) < 2 or not words[0].startswith("EXPLAIN"):
        raise SqlRefused(f"refused: send EXPLAIN SELECT ...; {SCOPE}")
    inner = text[tokens[1][0]:]
    try:
        explained = con.extract_statements(inner)
    except duckdb.Error:
        explained = []
    if len(explained) != 1 or explained[0].type.name != "SELECT":
        raise SqlRefused(f"refused: EXPLAIN is allowed for one plain SELECT only (no options, no other statement); {SCOPE}")


class Engine:
    """The worker's DuckDB: views over the store, locked down; one query at a time."""

    def __init__(self, home: Path, limits: SqlLimits) -> None:
        self.limits = limits
        self.db = Database(home)
        self._lock_down()

    def _lock_down(self) -> None:
        from ..store import all_tables

        con = self.db.con
        dirs = ", ".join("'" + str(self.db.store.table_dir(t)).replace("'", "''") + "/'" for t in sorted(all_tables()))
        for stmt in (
            "SET temp_directory = ''",
            f"SET memory_limit = '{self.limits.memory_limit}'",
            f"SET threads = {int(self.limits.threads)}",
            f"SET allowed_directories = [{dirs}]",
            "SET allowed_paths = []",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET allow_community_extensions = false",
            "SET enable_external_access = false",
            "SET lock_configuration = true",
        ):
            con.execute(stmt)

    def open(self, sql: str, params: list[Any] | None, cap: int, timeout: float, *, validate: bool) -> "Run":
        """Start `sql` and fetch its first batch (so errors surface before any row is sent)."""
        for attempt in range(COMPACTION_RETRIES + 1):
            run = Run(self, sql, params, cap, timeout, validate)
            try:
                run.start(retry=attempt < COMPACTION_RETRIES)
                return run
            except _FilesMoved:
                continue  # the views now cover the compaction's output: run it again
        raise QueryError("the store kept being compacted under the query; run it again")  # pragma: no cover

    def close(self) -> None:
        self.db.close()


class Run:
    """One query's cursor, timer and position; iterate for batches (cut to SLICE_BYTES)."""

    def __init__(self, engine: Engine, sql: str, params: list[Any] | None, cap: int, timeout: float, validate: bool) -> None:
        self.engine, self.sql, self.params, self.cap, self.timeout, self.validate = engine, sql, params, cap, timeout, validate
        self.rows = 0
        self.bytes = 0
        self.truncated = False
        self.started = time.perf_counter()
        self.schema: pa.Schema | None = None
        self._first: list[pa.RecordBatch] = []
        self._reader: Any = None
        self._cursor: Any = None
        self._timer: threading.Timer | None = None

    def start(self, *, retry: bool) -> None:
        db = self.engine.db
        db.refresh()
        self._cursor = db.con.cursor()
        try:
            if self.validate:
                check_statement(self._cursor, self.sql, db.describe)
            self._timer = threading.Timer(self.timeout, self._cursor.interrupt)
            self._timer.daemon = True
            self._timer.start()
            rel = self._cursor.sql(self.sql, params=self.params) if self.params else self._cursor.sql(self.sql)
            if rel is None:
                raise SqlRefused(f"refused: the statement returned no rows; {SCOPE}")
            self._reader = rel.to_arrow_reader(2048)
            self.schema = self._reader.schema
            first = self._reader.read_next_batch()
            self._first = [first]
        except StopIteration:
            self._first = []
        except BaseException as exc:
            self.close()
            if retry and isinstance(exc, Exception) and _is_lost_file(exc) and db.lost_files(exc):
                raise _FilesMoved from None
            raise self.explain(exc) from None

    def __iter__(self) -> Iterator["pa.RecordBatch"]:
        try:
            pending: Iterator[pa.RecordBatch] = iter(self._first)
            while True:
                batch = next(pending, None)
                if batch is None:
                    batch = self._reader.read_next_batch()
                for piece in _slices(batch):
                    room = self.cap - self.rows
                    if piece.num_rows > room:
                        piece, self.truncated = piece.slice(0, room), True
                    if self.rows and self.bytes + piece.nbytes > self.engine.limits.max_bytes:
                        self.truncated = True  # the byte limit: stop before this piece (the first one always goes)
                        return
                    if piece.num_rows:
                        self.rows += piece.num_rows
                        self.bytes += piece.nbytes
                        yield piece
                    if self.truncated or self.bytes > self.engine.limits.max_bytes:
                        self.truncated = True
                        return
        except StopIteration:
            return
        except Exception as exc:
            raise self.explain(exc) from None

    def explain(self, exc: BaseException) -> BaseException:
        """`exc` as the error the client gets (SqlTimeout, SqlRefused or QueryError with the tables)."""
        import duckdb

        if isinstance(exc, QueryError):
            return exc
        if isinstance(exc, duckdb.InterruptException) or "INTERRUPT" in str(exc):
            return SqlTimeout(f"the query ran past the time limit of {self.timeout:g} s and was stopped; narrow it (WHERE, LIMIT)")
        if isinstance(exc, duckdb.PermissionException) or (
            isinstance(exc, duckdb.InvalidInputException) and ("configuration has been locked" in str(exc) or "disabled" in str(exc))
        ):
            return SqlRefused(f"refused: {_first_line(exc)}; {SCOPE}")
        if isinstance(exc, duckdb.Error):
            return QueryError(self.engine.db.explain_error(exc))
        return QueryError(f"{type(exc).__name__}: {exc}")

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def _slices(batch: "pa.RecordBatch") -> Iterator["pa.RecordBatch"]:
    """`batch` in pieces of about SLICE_BYTES (rows of big spans make big batches)."""
    if batch.nbytes <= SLICE_BYTES or batch.num_rows <= 1:
        yield batch
        return
    step = max(1, batch.num_rows * SLICE_BYTES // batch.nbytes)
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


def _is_lost_file(exc: Exception) -> bool:
    import duckdb

    return isinstance(exc, duckdb.IOException)


class _FilesMoved(Exception):
    """A compaction removed files a statement was reading; the views have been refreshed."""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
