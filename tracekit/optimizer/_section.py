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
    target: "Target"
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
