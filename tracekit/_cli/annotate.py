"""`tracekit annotate KIND ID`: a human's label, score or note on a trace, span, experiment or eval case."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import HomeOption, say


def register(root: typer.Typer) -> None:
    root.command("annotate")(annotate_cmd)


def annotate_cmd(
    kind: Annotated[str, typer.Argument(help="trace | span | experiment | eval_case")],
    target_id: Annotated[str, typer.Argument(help="The id: trace id, TRACE/SPAN, experiment id, or RUN/CASE/EPOCH.")],
    label: Annotated[str | None, typer.Option("--label", "-l", help="A short label (approve, reject, good, bad, gaming, ...).")] = None,
    score: Annotated[float | None, typer.Option("--score", "-s", help="A number, when the label is a grade.")] = None,
    note: Annotated[str | None, typer.Option("--note", "-m", help="Why, in words.")] = None,
    author: Annotated[str | None, typer.Option("--author", envvar="TRACEKIT_AUTHOR", help="Who (default: your login name).")] = None,
    home: HomeOption = None,
) -> None:
    """Store an annotation; query them with SQL (the `annotations` table).

    Example: tracekit annotate experiment main-0003 --label reject --note "prints a fake metric"
    """
    from ..store import default_home
    from ..store._annotations import write_annotation

    row = write_annotation(home or default_home(), kind, target_id, label=label, score=score, note=note, author=author,
                           source="cli")
    say(f"annotated {row['target_kind']} {row['target_id']} ({row['annotation_id'][:12]}) as {row['author']}")
