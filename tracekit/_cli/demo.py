"""`tracekit demo`: run the bundled agent under the decorators and answer questions about it in SQL."""

from __future__ import annotations

from typing import Annotated

import typer

from .._util.termtext import markup
from ._common import HomeOption, console, render_rows, say


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        home: HomeOption = None,
        project: Annotated[str, typer.Option(help="Project name for the demo's spans.")] = "demo",
    ) -> None:
        """Run a small traced agent (no network, no key) and print SQL answers about its traces.

        Example: tracekit demo --home /tmp/tracekit-demo   (then: tracekit traces list --home /tmp/tracekit-demo)
        """
        import tracekit
        from tracekit._cli import _demo

        settings = tracekit.configure(project=project, home=home)
        for q in _demo.QUESTIONS:
            console.print(f"[bold]Q:[/bold] {markup(q)}  [bold]A:[/bold] {markup(_demo.answer(q))}")
        tracekit.flush()
        for title, sql in _demo.SQL_ANSWERS:
            console.print(f"\n[bold]{markup(title)}[/bold]\n[dim]{markup(sql)}[/dim]")
            rel = tracekit.query(sql, home=settings.home)
            render_rows(rel.columns, rel.fetchall(), "table")
        say(f"\nStore: {settings.home.resolve()}  ·  try: tracekit traces list --home {settings.home}")
