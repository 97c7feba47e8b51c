"""SQL over the store: DuckDB views over the Parquet files of each table, plus derived views.

    db = Database(".tracekit")      # or shared(home): one per store and process
    db.sql("SELECT name, count(*) FROM spans GROUP BY name").pl()

Each stored table (`spans`, `experiments`, `eval_results`, ...) is a view over its current files,
re-listed at every `sql()` call, so new flushes are visible at once. Derived views (`traces`,
`metrics`, `llm_calls`, `tool_calls`) are plain SQL over those (`derived_views()`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import QueryError
from . import _llmviews, _prices
from ._sqltext import sql_list
from ._store import Store
from ._tables import all_tables

if TYPE_CHECKING:
    import duckdb

TRACES_SQL = """
SELECT
    trace_id,
    min_by(span_id, (parent_span_id IS NOT NULL, start_time)) AS root_span_id,
    min_by(name, (parent_span_id IS NOT NULL, start_time)) AS name,
    min_by(kind, (parent_span_id IS NOT NULL, start_time)) AS kind,
    any_value(project) AS project,
    any_value(experiment_id) AS experiment_id,
    any_value(service_name) AS service_name,
    min(start_time) AS start_time,
    max(end_time) AS end_time,
    date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 AS duration_ms,
    count(*) AS span_count,
    count(*) FILTER (WHERE status = 'error') AS error_count,
    CASE WHEN count(*) FILTER (WHERE status = 'error') > 0 THEN 'error' ELSE 'ok' END AS status,
    min_by(input, (parent_span_id IS NOT NULL, start_time)) AS input,
    min_by(output, (parent_span_id IS NOT NULL, start_time)) AS output
FROM spans
GROUP BY trace_id
"""

METRICS_SQL = """
SELECT
    trace_id, span_id, experiment_id, project, span_name,
    e.time AS time,
    json_extract_string(e.attributes, '$.name') AS name,
    TRY_CAST(json_extract(e.attributes, '$.value') AS DOUBLE) AS value,
    TRY_CAST(json_extract(e.attributes, '$.step') AS BIGINT) AS step,
    e.attributes AS attributes
FROM (
    SELECT trace_id, span_id, experiment_id, project, name AS span_name, unnest(events) AS e
    FROM spans
    WHERE len(events) > 0
)
WHERE e.name = 'tracekit.metric'
"""

VIEW_DOCS: dict[str, str] = {
    "traces": "One row per trace: root span, project, experiment, start, duration, span and error counts.",
    "metrics": "Time series logged with tracekit.log_metric: one row per point (name, value, step, time).",
    **_llmviews.DOCS,
}


def derived_views() -> dict[str, str]:
    """The derived views in dependency order (llm_calls priced with the current price table)."""
    return {"traces": TRACES_SQL, "metrics": METRICS_SQL, **_llmviews.views()}


def _reprice_open_databases() -> None:
    """Prices changed: open databases get the new llm_calls SQL too."""
    sql = _llmviews.views()["llm_calls"]
    for db in list(_dbs.values()):
        with db.lock:
            if db._signature is not None:
                db.con.execute(f"CREATE OR REPLACE VIEW llm_calls AS {sql}")


_prices.on_change(_reprice_open_databases)


COMPACTION_RETRIES = 3  # a statement is bound again at most this often when compactions remove its files


class Database:
    """One DuckDB connection whose views cover one store; `refresh()` re-lists files."""

    def __init__(self, home: str | Path | None = None, *, read_only_sandbox: bool = False) -> None:
        import duckdb

        self.store = Store(home)
        self.con: duckdb.DuckDBPyConnection = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'") if _has_icu(self.con) else None
        self.lock = threading.RLock()
        self.read_only_sandbox = read_only_sandbox
        self._signature: tuple[Any, ...] | None = None
        tables = all_tables()
        for name, table in tables.items():
            self.con.execute(table.ddl().replace(f"CREATE TABLE {name} ", f"CREATE TABLE _empty_{name} "))
        self.refresh()

    def refresh(self) -> bool:
        """Point the table views at the files listed now; True if the listing changed."""
        import duckdb

        with self.lock:
            tables = all_tables()
            for attempt in range(COMPACTION_RETRIES + 1):
                listing = {name: self.store.files(name) for name in tables}
                signature = tuple((n, tuple(str(p) for p in ps)) for n, ps in sorted(listing.items()))
                if signature == self._signature:
                    return False
                try:
                    self._point_views(listing)
                    break
                except duckdb.IOException as exc:  # a compaction removed listed files: list again
                    if attempt == COMPACTION_RETRIES:
                        raise QueryError(f"the store kept changing while its files were listed ({exc}); run the query again") from None
            if self._signature is None:
                for view, sql in derived_views().items():
                    self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")
            self._signature = signature
            return True

    def _point_views(self, listing: dict[str, list[Path]]) -> None:
        tables = all_tables()
        for name, files in listing.items():
            if files:  # values from before a vocabulary change read as today's (Column.legacy)
                src = tables[name].read_select(
                    f"SELECT * FROM _empty_{name} UNION ALL BY NAME "
                    f"SELECT * FROM read_parquet({sql_list(files)}, union_by_name = true)"
                )
            else:
                src = f"SELECT * FROM _empty_{name}"
            self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {src}")  # binds it: reads the files' footers

    def lost_files(self, exc: BaseException) -> bool:
        """Whether `exc` came from files a compaction removed after the views were made (then the
        views now cover its output, and running the statement again sees every row once)."""
        import duckdb

        return isinstance(exc, duckdb.IOException) and self.refresh()

    def sql(self, sql: str) -> "duckdb.DuckDBPyRelation":
        """A relation for `sql`; runs when fetched (a compaction in between can fail the fetch)."""
        self.refresh()
        for attempt in range(COMPACTION_RETRIES + 1):
            try:
                rel = self.con.sql(sql)
                break
            except Exception as exc:
                if attempt < COMPACTION_RETRIES and self.lost_files(exc):
                    continue
                raise QueryError(self.explain_error(exc)) from None
        if rel is None:
            raise QueryError("the statement returned no rows (tracekit.query is for SELECT-style queries)")
        return rel

    def statements(self, sql: str) -> list[str]:
        """`sql` split into its statements by DuckDB's parser (`;` inside strings and comments is not a split),
        so a caller can show each statement's result instead of only the last one's."""
        try:
            return [s.query.strip() for s in self.con.extract_statements(sql)]
        except Exception as exc:
            raise QueryError(self.explain_error(exc)) from None

    def explain_error(self, exc: BaseException) -> str:
        return f"{exc}\n\n{self.describe()}"

    def describe(self) -> str:
        """The tables and views with their columns, for error messages and `tracekit sql --schema`."""
        lines = ["Tables and views:"]
        for name in list(all_tables()) + list(derived_views()):
            try:
                cols = self.con.execute(f"DESCRIBE {name}").fetchall()
                lines.append(f"  {name}(" + ", ".join(c[0] for c in cols) + ")")
            except Exception:
                continue
        return "\n".join(lines)

    def close(self) -> None:
        self.con.close()


def _has_icu(con: Any) -> bool:
    try:
        return bool(con.execute("SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'icu' AND loaded").fetchone()[0])
    except Exception:
        return False


_dbs: dict[str, Database] = {}
_dbs_lock = threading.Lock()


def shared(home: str | Path) -> Database:
    """The process-wide Database of the store at `home` (one connection per store, reused)."""
    key = str(Path(home).resolve())
    with _dbs_lock:
        db = _dbs.get(key)
        if db is None:
            db = _dbs[key] = Database(home)
    return db
