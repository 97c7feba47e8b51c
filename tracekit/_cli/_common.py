"""Helpers shared by the CLI modules: the home option, output formats, error handling.

Everything these print is treated as hostile text (see `tracekit._util.termtext`): table cells are
Rich `Text` (never markup), strings go through `clean`, JSON through `json_text`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .._util.jsonutil import sql_scalar
from .._util.termtext import clean, json_text, markup

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="TRACEKIT_HOME", help="Store folder (default ./.tracekit).", show_default=False),
]



def choices(*allowed: str) -> Any:
    """A typer callback: a value outside `allowed` is a usage error naming the choices, before any work."""
    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r}: use {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    return check


def FormatOption(*allowed: str) -> Any:
    """`--format/-f`, checked against `allowed` when parsed (help lists them)."""
    return typer.Option("--format", "-f", help=" | ".join(allowed), callback=choices(*allowed))


# emoji=False: ":name:" in stored text is not Rich's to replace either
console = Console(highlight=False, soft_wrap=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


def read_home(home: Path | None) -> None:
    """For commands that read the store: a warning when its folder does not exist (`Store.missing`);
    every table would read empty without a word. Commands that write create the store instead."""
    from ..store._store import Store

    Store(home).warn_if_missing()


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return sql_scalar(value)


def render_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, *, max_width: int = 60) -> str | None:
    """Print or return rows in `fmt` (table | csv | json | jsonl). Returns text for csv/json.

    A table fits the terminal (`_table`): values are cut with an ellipsis, never the columns to slivers;
    a cell keeps at most `3 * max_width` characters; times show to the second (csv and json keep every digit).
    """
    if fmt == "json":
        return json_text([dict(zip(columns, (jsonable(v) for v in r))) for r in rows], indent=None)
    if fmt == "jsonl":
        return "\n".join(json_text(dict(zip(columns, (jsonable(v) for v in r)))) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([clean(c) for c in columns])
        for r in rows:
            w.writerow(["" if v is None else clean(json_text(jsonable(v)) if isinstance(v, (dict, list)) else jsonable(v))
                        for v in r])
        return buf.getvalue().rstrip("\n")
    from ._table import kind_of, print_rows

    kinds = [kind_of(c, [r[i] for r in rows]) for i, c in enumerate(columns)]
    cells = [[short(v.isoformat(sep=" ", timespec="seconds") if isinstance(v, dt.datetime) else v, max_width * 3) for v in r] for r in rows]
    print_rows(console, [clean(c, newlines=False) for c in columns], cells, kinds)
    console.print(f"[dim]{len(rows)} row{'s' if len(rows) != 1 else ''}[/dim]")
    return None


def short(value: Any, limit: int = 120) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dt.datetime,)):
        text = value.isoformat(sep=" ", timespec="milliseconds")
    else:
        text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)
    text = clean(text.replace("\r\n", "\n").replace("\n", "⏎"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell(value: Any, limit: int = 120, style: str = "") -> Any:
    """A table cell that Rich prints as it is (a `Text`, never markup)."""
    from rich.text import Text

    return Text(short(value, limit), style=style)


def fail(message: str, code: int = 2) -> "typer.Exit":
    err_console.print(f"[red]error:[/red] {markup(message)}", markup=True, highlight=False)
    return typer.Exit(code)


def emit(text: str | None) -> None:
    """Write text for the terminal or a pipe, control characters made visible (JSON from `json_text` is unchanged)."""
    if text is not None:
        sys.stdout.write(clean(text) + "\n")


def say(text: str, *, err: bool = False) -> None:
    """Print one plain message (no markup, no highlighting, no wrapping), hostile parts made visible."""
    (err_console if err else console).print(clean(text), markup=False, highlight=False, soft_wrap=True)
