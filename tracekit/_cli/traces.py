"""`tracekit traces list|show`: browse traces."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .._util.termtext import markup
from ..store import sql_literal
from ._common import FormatOption, HomeOption, console, emit, read_home, render_rows, short

app = typer.Typer(help="List traces and show one as a span tree.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="traces")



@app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, newest first.")] = 20,
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment id.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only traces with an error.")] = False,
    fmt: Annotated[str, FormatOption("table", "csv", "json", "jsonl")] = "table",
    home: HomeOption = None,
) -> None:
    """List recent traces. Example: tracekit traces list --errors -n 5"""
    from ..store import Database

    read_home(home)
    where = []
    if project:
        where.append(f"project = {sql_literal(project)}")
    if experiment:
        where.append(f"experiment_id = {sql_literal(experiment)}")
    if errors:
        where.append("error_count > 0")
    sql = (
        "SELECT trace_id, name, kind, project, experiment_id, start_time, round(duration_ms, 2) AS duration_ms, "
        "span_count AS spans, error_count AS errors FROM traces"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY start_time DESC LIMIT {int(limit)}"
    )
    rel = Database(home).sql(sql)
    cols, rows = rel.columns, [list(r) for r in rel.fetchall()]
    if fmt == "table":
        cols, rows = _narrow(cols, rows)
    emit(render_rows(cols, rows, fmt))


def _narrow(cols: list[str], rows: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """The table's columns: `trace`, the id's first 12 characters (what `traces show` takes; unique in
    practice), and project / experiment only when they tell traces apart. Fits 80 columns; csv and
    json keep every column whole."""
    at = {c: i for i, c in enumerate(cols)}
    keep = ["trace_id", "name", "kind", "start_time", "duration_ms", "spans", "errors"]
    if len({r[at["project"]] for r in rows}) > 1:
        keep.insert(3, "project")
    if any(r[at["experiment_id"]] for r in rows):
        keep.insert(keep.index("start_time"), "experiment_id")
    out = [[(r[at[c]] or "")[:12] if c == "trace_id" else r[at[c]] for c in keep] for r in rows]
    return ["trace" if c == "trace_id" else c for c in keep], out


@app.command("show")
def show_cmd(
    trace_id: Annotated[str, typer.Argument(help="A trace id or a unique prefix of one.")],
    width: Annotated[int, typer.Option(min=10, help="Characters of input/output to show per span.")] = 100,
    fmt: Annotated[str, FormatOption("tree", "json")] = "tree",
    transcript: Annotated[bool, typer.Option("--transcript", help="Show the run as a conversation: user turns, "
                                             "thinking, text, tool calls with results, tokens and cost.")] = False,
    home: HomeOption = None,
) -> None:
    """Show a trace as a tree of spans with durations, status, inputs and outputs.

    Example: tracekit traces show 3f2a --transcript
    """
    read_home(home)
    if transcript:
        from ._transcript import show

        show(trace_id, home=home, width=width, fmt=fmt)
        return
    from rich.tree import Tree

    from ..store import Database
    from ..trajectories._trajectory import resolve_trace_id

    db = Database(home)
    tid = resolve_trace_id(db, trace_id)
    rel = db.sql(
        "SELECT span_id, parent_span_id, name, kind, status, status_message, duration_ms, start_time, input, output, "
        f"experiment_id, attributes FROM spans WHERE trace_id = {sql_literal(tid)} ORDER BY start_time"
    )
    cols = rel.columns
    rows = [dict(zip(cols, r)) for r in rel.fetchall()]
    if fmt == "json":
        emit(render_rows(cols, [list(r.values()) for r in rows], "json"))
        return
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {r["span_id"] for r in rows}
    for r in rows:
        parent = r["parent_span_id"] if r["parent_span_id"] in ids else None
        by_parent.setdefault(parent, []).append(r)

    def label(r: dict[str, Any]) -> str:
        # every field is whatever an OTLP client sent: escaped for markup, control characters made visible
        status = "[red]✗ error[/red]" if r["status"] == "error" else "[green]✓[/green]"
        text = f"[bold]{markup(r['name'], newlines=False)}[/bold] [dim]{markup(r['kind'], newlines=False)}[/dim] " \
               f"{r['duration_ms']:.1f} ms {status}"
        if r["status"] == "error" and r["status_message"]:
            text += f" [red]{_esc(short(r['status_message'], width))}[/red]"
        if r["input"] is not None:
            text += f"\n  [cyan]in [/cyan] {_esc(short(r['input'], width))}"
        if r["output"] is not None:
            text += f"\n  [magenta]out[/magenta] {_esc(short(r['output'], width))}"
        return text

    total = max((r["duration_ms"] for r in rows), default=0.0)
    tree = Tree(f"trace [bold]{markup(tid)}[/bold] · {len(rows)} spans · {total:.1f} ms")

    def add(node: Any, parent: str | None) -> None:
        for r in by_parent.get(parent, []):
            add(node.add(label(r)), r["span_id"])

    add(tree, None)
    console.print(tree)


def _esc(text: str) -> str:
    return markup(text, newlines=False)
