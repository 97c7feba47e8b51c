"""Tables that stay readable in a narrow terminal (80 columns).

Rich, given more columns than fit, narrows every column until headers fold into fragments
(`experi / ment_i / d`) and values into columns of two letters. Here the widths are decided
first, the way a reader would: numbers, times and ids are never cut (a cut number or id is a
wrong one); free text gives way, widest first, down to the width of its header (at least
`TEXT_FLOOR`), and shows what it lost as an ellipsis. When even that does not fit, rows print as
records, one `column  value` line each (psql's expanded mode), so nothing is squeezed to nothing.

    print_rows(console, ["trace_id", "name"], [["3f2a...", "agent"]], kinds=["id", "text"])

Cells arrive as plain strings already made inert (`_common.short`); they are printed as Rich
`Text`, never as markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

TEXT_FLOOR = 10  # a text column narrower than this says too little to be worth a column
GAP = 2  # spaces between columns


def kind_of(column: str, values: Sequence[Any]) -> str:
    """'number' (right-aligned) and 'fixed' (times, ids) are never cut; 'text' is cut with an ellipsis when room is short."""
    name = column.lower()
    if name == "id" or name.endswith("_id") or name == "trace":
        return "fixed"
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "number"
    if present and all(isinstance(v, (dt.datetime, dt.date, dt.time, dt.timedelta)) for v in present):
        return "fixed"
    return "text"


def fit(headers: Sequence[str], cells: Sequence[Sequence[str]], kinds: Sequence[str], width: int) -> list[int] | None:
    """Column widths that fit `width` (gaps included), or None when only records would be readable."""
    natural = [max([cell_len(h)] + [cell_len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    room = width - GAP * (len(headers) - 1)
    if sum(natural) <= room:
        return natural
    floors = [n if k != "text" else min(n, max(cell_len(h), TEXT_FLOOR)) for n, k, h in zip(natural, kinds, headers)]
    if sum(floors) > room:
        return None
    lo, hi = 0, max(natural)  # the largest cap on text widths that fits: widest text gives way first
    while lo < hi:
        cap = (lo + hi + 1) // 2
        if sum(max(f, min(n, cap)) for n, f in zip(natural, floors)) <= room:
            lo = cap
        else:
            hi = cap - 1
    return [max(f, min(n, lo)) for n, f in zip(natural, floors)]


def print_rows(console: Console, headers: Sequence[str], cells: Sequence[Sequence[str]], kinds: Sequence[str]) -> None:
    """Print `cells` as a table fitted to the console, or as records when no table fits."""
    widths = fit(headers, cells, kinds, console.width)
    if widths is None:
        _records(console, headers, cells)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold",
                  collapse_padding=True)
    for header, w, kind in zip(headers, widths, kinds):
        table.add_column(Text(header), width=w, no_wrap=True, overflow="ellipsis",
                         justify="right" if kind == "number" else "left")
    for row in cells:
        table.add_row(*[Text(c) for c in row])
    console.print(table)


def _records(console: Console, headers: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    key = max((cell_len(h) for h in headers), default=0)
    room = max(console.width - key - GAP, 8)
    for n, row in enumerate(cells):
        if n:
            console.print()
        for header, value in zip(headers, row):
            line = Text(header.ljust(key) + " " * GAP, style="bold")
            shown = Text(value)
            shown.truncate(room, overflow="ellipsis")
            console.print(line + shown, no_wrap=True, overflow="ellipsis", soft_wrap=False)
