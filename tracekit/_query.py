"""`tracekit.query()` and `tracekit.annotate()`: the configured store, from this process.

    rel = tracekit.query("SELECT name, count(*) FROM spans GROUP BY name")
    rel.pl()  # Polars;  rel.arrow(), rel.df() (pandas), rel.fetchall()

The engine is `tracekit.store.Database`; this is the facade that knows the configured home and
flushes spans still buffered in this process first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ._config import flush as _flush
from ._config import get_settings

if TYPE_CHECKING:
    import duckdb

    from .store import Database


def database(home: str | Path | None = None) -> "Database":
    """The process-wide Database for `home` (default: the configured home)."""
    from .store._database import shared

    return shared(get_settings().home if home is None else home)


def query(sql: str, *, home: str | Path | None = None, flush: bool = True) -> "duckdb.DuckDBPyRelation":
    """Run SQL over the store; returns a DuckDB relation (`.pl()`, `.arrow()`, `.df()`, `.fetchall()`).

    Spans still buffered in this process are flushed first, so what just ran is visible. A `home` that
    does not exist answers with empty tables and a `StoreWarning` naming it (an existing empty one is quiet).
    """
    if flush:
        _flush()
    from .store._store import Store

    Store(get_settings().home if home is None else home).warn_if_missing(stacklevel=2)  # else 0 rows without a word
    return database(home).sql(sql)


def annotate(kind: str, target_id: str, *, label: str | None = None, score: float | None = None, note: str | None = None,
             author: str | None = None, home: str | Path | None = None) -> str:
    """Label, score or note a trace, span, experiment or eval case; returns the annotation's id.

        tracekit.annotate("experiment", "main-0003", label="reject", note="prints a fake metric")
        tracekit.annotate("trace", trace_id, label="good", score=1.0)

    `kind` is trace | span | experiment | eval_case; see the `annotations` table (docs/tables.md).
    """
    from .store._annotations import write_annotation

    settings = get_settings()
    row = write_annotation(settings.home if home is None else home, kind, target_id, label=label, score=score, note=note,
                           author=author, source="python", project=settings.project)
    return row["annotation_id"]
