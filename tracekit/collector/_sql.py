"""Read-only SQL over the store for HTTP clients: DuckDB locked down, one SELECT at a time, bounded.

    service = SqlService(home, SqlLimits(max_rows=10_000, timeout=10.0))
    result = service.run("SELECT name, count(*) FROM spans GROUP BY 1", limit=100)
    result.table, result.truncated                      # Arrow, at most `limit` rows
    service.run("SELECT * FROM read_csv('/etc/passwd')")  # SqlRefused (HTTP 403)

Two independent fences:

1. DuckDB's own security settings, applied once to the connection after the views exist:
   `allowed_directories` = the store's table folders, then `enable_external_access = false` (no
   other file, no network, no ATTACH, no INSTALL/LOAD), `autoinstall/autoload_known_extensions =
   false`, `allow_community_extensions = false`, no temp directory (no spilling to disk), a
   `memory_limit`, and `lock_configuration = true` so no statement can change any of it.
2. Statement validation by DuckDB's parser: exactly one statement, of type SELECT (which covers
   WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE) or EXPLAIN. COPY, ATTACH, INSTALL, LOAD,
   SET, PRAGMA, CALL, CREATE, INSERT, EXPORT ... are refused before they run.

Each query runs in its own cursor with a timer that interrupts it at the time limit; rows stream
out in batches and stop at the row limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import QueryError
from .._query import COMPACTION_RETRIES, Database

if TYPE_CHECKING:
    import pyarrow as pa

ALLOWED = ("SELECT", "EXPLAIN")
SCOPE = "the SQL endpoint only reads the store's tables and views (spans, traces, ...)"


class SqlRefused(QueryError):
    """The statement is not allowed here: not a single read-only SELECT, or it reaches outside the store."""


class SqlTimeout(QueryError):
    """The query ran past the time limit and was interrupted."""


@dataclass(frozen=True)
class SqlLimits:
    max_rows: int = 100_000  # the most rows one response may carry
    default_rows: int = 10_000  # when the request names no limit
    timeout: float = 30.0  # seconds, execution plus fetching
    max_bytes: int = 256 << 20  # Arrow bytes of one response: past it the rows stop (truncated)
    memory_limit: str = "1GB"
    threads: int = 2


@dataclass
class SqlResult:
    table: "pa.Table"
    truncated: bool
    elapsed_ms: float


class SqlService:
    """A locked-down Database over one store, shared by all requests (a cursor per query)."""

    def __init__(self, home: Path, limits: SqlLimits | None = None) -> None:
        self.limits = limits or SqlLimits()
        self.home = Path(home).resolve()
        self.db = Database(self.home)
        self._lock_down()

    def _lock_down(self) -> None:
        from .._schema import all_tables

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

    def check(self, sql: str, cursor: Any = None) -> None:
        """Refuse anything but one SELECT/EXPLAIN statement (SqlRefused), or unparsable SQL (QueryError)."""
        if not sql.strip():
            raise QueryError("empty SQL; send e.g. {\"sql\": \"SELECT name, count(*) FROM spans GROUP BY 1\"}")
        try:
            statements = (cursor or self.db.con.cursor()).extract_statements(sql)
        except Exception as exc:
            raise QueryError(f"{exc}\n\n{self.db.describe()}") from None
        if len(statements) != 1:
            raise SqlRefused(f"refused: send exactly one statement (got {len(statements)}); {SCOPE}")
        kind = statements[0].type.name
        if kind not in ALLOWED:
            raise SqlRefused(
                f"refused: {kind} statements are not allowed; {SCOPE} with a single SELECT "
                "(WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN are fine)"
            )

    def run(self, sql: str, *, limit: int | None = None, timeout: float | None = None) -> SqlResult:
        """Validate and run `sql`; at most `limit` rows (capped by the service's max_rows)."""
        cap = min(limit if limit is not None else self.limits.default_rows, self.limits.max_rows)
        if cap < 0:
            raise QueryError(f"limit {limit}: use a number of rows >= 0")
        return self._execute(sql, None, cap, timeout if timeout is not None else self.limits.timeout, validate=True)

    def run_trusted(self, sql: str, params: list[Any] | None = None, *, limit: int = 1_000_000) -> "pa.Table":
        """Run tracekit's own parameterised SQL (the /api/traces endpoints) under the same limits."""
        return self._execute(sql, params, limit, self.limits.timeout).table

    def _execute(self, sql: str, params: list[Any] | None, cap: int, timeout: float, validate: bool = False) -> SqlResult:
        for _ in range(COMPACTION_RETRIES):
            try:
                return self._execute_once(sql, params, cap, timeout, validate, retry=True)
            except _FilesMoved:
                continue  # the views now cover the compaction's output: run it again
        return self._execute_once(sql, params, cap, timeout, validate, retry=False)

    def _execute_once(
        self, sql: str, params: list[Any] | None, cap: int, timeout: float, validate: bool, *, retry: bool
    ) -> SqlResult:
        """One run; with `retry`, _FilesMoved when a compaction removed files under it."""
        import duckdb
        import pyarrow as pa

        self.db.refresh()
        cur = self.db.con.cursor()
        if validate:
            try:
                self.check(sql, cur)
            except BaseException:
                cur.close()
                raise
        timer = threading.Timer(timeout, cur.interrupt)
        timer.daemon = True
        start = time.perf_counter()
        timer.start()
        batches: list[pa.RecordBatch] = []
        rows = 0
        truncated = False
        try:
            rel = cur.sql(sql, params=params) if params else cur.sql(sql)
            if rel is None:
                raise SqlRefused(f"refused: the statement returned no rows; {SCOPE}")
            reader = rel.to_arrow_reader(2048)
            size = 0
            for batch in reader:
                if rows + batch.num_rows > cap:
                    batches.append(batch.slice(0, cap - rows))
                    truncated = True
                    break
                size += batch.nbytes
                if size > self.limits.max_bytes and batches:
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
                if size > self.limits.max_bytes:
                    truncated = True
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except (duckdb.InterruptException, OSError) as exc:
            if "INTERRUPT" in str(exc) or isinstance(exc, duckdb.InterruptException):
                raise SqlTimeout(f"the query ran past the time limit of {timeout:g} s and was stopped; narrow it (WHERE, LIMIT)") from None
            raise QueryError(str(exc)) from None
        except duckdb.PermissionException as exc:
            raise SqlRefused(f"refused: {_first_line(exc)}; {SCOPE}") from None
        except duckdb.InvalidInputException as exc:
            if "configuration has been locked" in str(exc) or "disabled" in str(exc):
                raise SqlRefused(f"refused: {_first_line(exc)}; {SCOPE}") from None
            raise QueryError(self.db.explain_error(exc)) from None
        except duckdb.Error as exc:
            if retry and self.db.lost_files(exc):
                raise _FilesMoved from None
            raise QueryError(self.db.explain_error(exc)) from None
        finally:
            timer.cancel()
            cur.close()
        return SqlResult(table, truncated, (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self.db.close()


class _FilesMoved(Exception):
    """A compaction removed files a statement was reading; the views have been refreshed."""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
