"""`tracekit sql "SELECT ..."`: run SQL over the store."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import HomeOption, emit, render_rows


def register(app: typer.Typer) -> None:
    @app.command("sql")
    def sql_cmd(
        query: Annotated[str | None, typer.Argument(help="The SQL; '-' reads it from stdin.", show_default=False)] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json | jsonl")] = "table",
        schema: Annotated[bool, typer.Option("--schema", help="List the tables and views with their columns.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Run SQL over the trace store (tables: spans, experiments, eval_results; views: traces, metrics, ...).

        Example: tracekit sql "SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY n DESC"
        """
        import sys

        from ..store import Database

        if fmt not in ("table", "csv", "json", "jsonl"):
            raise typer.BadParameter(f"--format {fmt!r}: use table, csv, json or jsonl")
        db = Database(home)
        if schema or query is None:
            emit(db.describe())
            return
        if query == "-":
            query = sys.stdin.read()
        rel = db.sql(query)
        emit(render_rows(rel.columns, rel.fetchall(), fmt))
