"""One section of the proposer's context: its input (the run's rows, the store) and its declaration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store import sql_literal

if TYPE_CHECKING:
    from ..store import Database
    from ..store._tables import ExperimentRow
    from ._target import Target


@dataclass
class SectionInput:
    db: "Database"
    target: "Target | None"  # None in a trace digest (`trace_digest`), which renders only the trace sections
    run_id: str
    # the incumbent's row with the noise and threshold in force; only those while its baseline still runs
    parent: Mapping[str, Any]
    rows: list[ExperimentRow]  # the run's `experiments` rows (the ledger's, in memory), oldest first
    files: dict[str, str]
    focus: list[Mapping[str, Any]]  # experiments whose traces to show: the parent and recent runs
    repair: str | None = None
    trace: bool = True  # False with --feedback scores: no failure reasons in the history either

    def sql(self, sql: str) -> list[dict[str, Any]]:
        with self.db.lock:  # the views were refreshed once for this render (see ContextBuilder.render)
            rel = self.db.con.sql(sql)
            return [dict(zip(rel.columns, r)) for r in rel.fetchall()]

    def trace_filter(self) -> str:
        ids = [r["trace_id"] for r in self.focus if r.get("trace_id")]
        return "trace_id IN (" + ", ".join(sql_literal(i) for i in ids) + ")" if ids else "FALSE"


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    render: Callable[[SectionInput], str]
    budget: int = 4000  # characters
    priority: int = 5  # lower survives longer when the total budget is exceeded
    trace: bool = False  # left out with --feedback scores
    keep: str = "both"  # which end elision keeps: both | head | tail


def elide(text: str, budget: int, keep: str = "both") -> str:
    """`text` cut to about `budget` characters, keeping whole lines at the head and/or tail."""
    if len(text) <= budget:
        return text
    lines = text.splitlines()
    if len(lines) <= 1:
        half = max(budget // 2 - 20, 0)
        cut = len(text) - 2 * half
        return text[:half] + f" … {cut} chars elided … " + text[len(text) - half:] if keep == "both" else (
            text[-budget:] if keep == "tail" else text[:budget])
    room = max(budget - 40, 0)
    head_room = {"both": room * 2 // 5, "head": room, "tail": 0}[keep]
    tail_room = room - head_room
    head: list[str] = []
    used = 0
    for ln in lines:
        if used + len(ln) + 1 > head_room:
            break
        head.append(ln)
        used += len(ln) + 1
    tail: list[str] = []
    used = 0
    for ln in reversed(lines[len(head):]):
        if used + len(ln) + 1 > tail_room:
            break
        tail.append(ln)
        used += len(ln) + 1
    tail.reverse()
    skipped = len(lines) - len(head) - len(tail)
    return "\n".join(head + [f"… {skipped} lines elided …"] + tail)
