"""The store: Parquet tables under one home, their schema, span rows, OTLP decoding, SQL views.

    from tracekit.store import Database, Store
    Store(".tracekit").write("spans", rows)                # one new file per write, atomically
    Database(".tracekit").sql("SELECT * FROM traces").pl()  # DuckDB views over the files

`tracekit.query()` and `tracekit.Store` are the user-facing doors; this package is what they,
the collector, the sandbox, evals and the optimizer share. It imports nothing above it
(docs/design/architecture.md) and nothing heavy until used.
"""

from __future__ import annotations

from ._database import Database, derived_views
from ._prices import ModelPrice, model_prices, set_model_prices
from ._schema import Column, Table
from ._sqltext import sql_list, sql_literal
from ._store import Store, default_home
from ._tables import all_tables, get_table

__all__ = [
    "Column",
    "Database",
    "ModelPrice",
    "Store",
    "Table",
    "all_tables",
    "default_home",
    "derived_views",
    "get_table",
    "model_prices",
    "set_model_prices",
    "sql_list",
    "sql_literal",
]
