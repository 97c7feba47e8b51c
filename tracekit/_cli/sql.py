"""`tracekit sql "SELECT ..."`: run SQL over the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .._errors import QueryError
from ._common import FormatOption, HomeOption, console, emit, read_home, render_rows, short


def register(app: typer.Typer) -> None:
    @app.command("sql")
    def sql_cmd(
        query: Annotated[str | None, typer.Argument(help="The SQL; '-' reads it from stdin.", show_default=False)] = None,
        fmt: Annotated[str, FormatOption("table", "csv", "json", "jsonl")] = "table",
        schema: Annotated[bool, typer.Option("--schema", help="List the tables and views with their columns.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Run SQL over the trace store (tables: spans, experiments, eval_results; views: traces, metrics, ...).

        Several statements separated by ';' each show their result, in order, as tables (csv and json
        take one statement: one document per run).

        Example: tracekit sql "SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY n DESC"
        """
        import sys

        from ..store import Database

        read_home(home)
        db = Database(home)
        if schema or query is None:
            emit(db.describe())
            return
        if query == "-":
            query = sys.stdin.read()
        statements = db.statements(query)
        if not statements:
            raise QueryError("no SQL statement given; e.g. tracekit sql \"SELECT count(*) FROM spans\"")
        if len(statements) > 1 and fmt != "table":
            raise typer.BadParameter(f"{fmt!r} prints one statement's result and the SQL has {len(statements)}; "
                                     "run them one at a time, or use --format table to see each", param_hint="'--format'")
        for i, statement in enumerate(statements, 1):
            rel = db.sql(statement)  # run and fetched in order: a later statement sees what an earlier one made
            rows = rel.fetchall()
            if len(statements) > 1:
                console.print(Text(f"-- statement {i} of {len(statements)}: {short(statement, 200)}", style="dim"))
            emit(render_rows(rel.columns, rows, fmt))
