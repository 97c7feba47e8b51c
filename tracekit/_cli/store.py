"""`tracekit store info|compact`: look after the Parquet store."""

from __future__ import annotations

from typing import Annotated

import typer

from .._errors import StoreError
from .._util.termtext import markup
from ..store._store import Store
from ._common import FormatOption, HomeOption, console, emit, render_rows, say

app = typer.Typer(help="Inspect and compact the Parquet store.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="store")


@app.command("info")
def info_cmd(home: HomeOption = None, fmt: Annotated[str, FormatOption("table", "csv", "json", "jsonl")] = "table") -> None:
    """Files, rows and bytes per table. Example: tracekit store info"""
    store = Store(home)
    _require(store)
    info = store.info()
    console.print(f"[dim]home: {markup(store.home.resolve())}[/dim]") if fmt == "table" else None
    emit(render_rows(["table", "files", "rows", "bytes"], [[t, v["files"], v["rows"], v["bytes"]] for t, v in info.items()], fmt))


@app.command("compact")
def compact_cmd(
    table: Annotated[list[str] | None, typer.Argument(help="Tables to compact (default: all).", show_default=False)] = None,
    home: HomeOption = None,
) -> None:
    """Merge each table's small files into one (sorted by key); no row is lost or duplicated.

    Safe while other processes write: it only merges files that exist when it starts.
    Example: tracekit store compact spans
    """
    from ..store import all_tables

    store = Store(home)
    _require(store)
    names = table or sorted(all_tables())
    for name in names:
        if name not in all_tables():
            raise typer.BadParameter(f"unknown table {name!r}; tables: {', '.join(sorted(all_tables()))}")
        r = store.compact(name)
        say(f"{name}: {r.files_before} files -> {r.files_after}, rows {r.rows_before} -> {r.rows_after}")


def _require(store: Store) -> None:
    """A home that is not a store is an error here: reporting its zero rows would read as an empty store."""
    problem = store.missing()
    if problem is not None:
        raise StoreError(f"{problem}; {store.where_hint()}")
