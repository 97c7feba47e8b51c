"""`tracekit.query()`: SQL over the configured store, seeing what this process just recorded.

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
