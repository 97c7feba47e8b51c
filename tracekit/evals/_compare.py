"""Compare two eval runs case by case: regressions, fixes, and the aggregate delta with its error.

    c = compare("20261126T0315-a1b2c3", "latest")
    c.delta["accuracy"], c.delta_stderr["accuracy"]     # B - A over the cases both ran
    for case in c.regressions: print(case.case_id, case.error_b, case.trace_b)

Cases pair on their stable id. A case's result is its mean score and pass rate over its epochs. The
standard error of a delta is the paired one (sd of per-case differences / sqrt(n)), which is what
tells a harness edit's real effect from noise when the same cases ran before and after.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..store._tables import EvalResultRow
from ._metrics import by_case, case_reduce, mean, stderr
from ._results import resolve_run, run_rows


@dataclass(frozen=True)
class CaseChange:
    case_id: str
    split: str | None
    pass_a: float
    pass_b: float
    score_a: float
    score_b: float
    status_b: str
    explanation_b: str | None  # why it fails in B (scorer explanation or error)
    error_b: str | None
    trace_a: str | None
    trace_b: str | None


@dataclass
class Comparison:
    run_a: str
    run_b: str
    task_a: str
    task_b: str
    paired: int
    regressions: list[CaseChange] = field(default_factory=list)
    fixes: list[CaseChange] = field(default_factory=list)
    changed: list[CaseChange] = field(default_factory=list)  # score moved, pass rate did not
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    a: dict[str, float] = field(default_factory=dict)  # aggregates over the paired cases
    b: dict[str, float] = field(default_factory=dict)
    delta: dict[str, float] = field(default_factory=dict)
    delta_stderr: dict[str, float] = field(default_factory=dict)

    def z(self, metric: str = "accuracy") -> float:
        """delta / its standard error (inf for a nonzero delta with zero error, 0 for no change)."""
        d, se = self.delta.get(metric, 0.0), self.delta_stderr.get(metric, 0.0)
        if se > 0:
            return d / se
        return 0.0 if d == 0 else math.copysign(math.inf, d)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["z"] = {m: self.z(m) for m in self.delta}
        return out

    def render(self, max_cases: int = 20) -> str:
        """A plain-text report (what a meta-agent reads after a harness edit)."""
        lines = [f"compare A={self.run_a} ({self.task_a}) -> B={self.run_b} ({self.task_b})",
                 f"paired cases: {self.paired}  only in A: {len(self.only_a)}  only in B: {len(self.only_b)}"]
        if self.task_a != self.task_b:
            lines.append(f"warning: the runs are of different tasks ({self.task_a} vs {self.task_b})")
        for m in ("accuracy", "score"):
            if m in self.delta:
                lines.append(f"{m}: {self.a[m]:.4f} -> {self.b[m]:.4f}  delta {self.delta[m]:+.4f} "
                             f"± {self.delta_stderr[m]:.4f} (stderr, z={self.z(m):+.2f})")
        lines.append(f"regressions: {len(self.regressions)}  fixes: {len(self.fixes)}  score changes: {len(self.changed)}")
        for title, cases in (("REGRESSIONS (passed in A, fail in B)", self.regressions), ("FIXES (failed in A, pass in B)", self.fixes)):
            if not cases:
                continue
            lines.append(f"{title}:")
            for c in cases[:max_cases]:
                why = c.error_b or c.explanation_b or ""
                lines.append(f"  {c.case_id} [{c.split}] pass {c.pass_a:.2f}->{c.pass_b:.2f} score {c.score_a:.2f}->{c.score_b:.2f}"
                             f" trace_b={c.trace_b}" + (f"\n      {why[:200]}" if why and title.startswith("REG") else ""))
            if len(cases) > max_cases:
                lines.append(f"  ... and {len(cases) - max_cases} more")
        return "\n".join(lines)


def _change(cid: str, ra: list[EvalResultRow], rb: list[EvalResultRow]) -> CaseChange:
    sa, pa = case_reduce(ra)
    sb, pb = case_reduce(rb)
    worst_b = min(rb, key=lambda r: (bool(r["passed"]), float(r["score"] or 0.0)))
    return CaseChange(case_id=cid, split=worst_b.get("split"), pass_a=pa, pass_b=pb, score_a=sa, score_b=sb,
                      status_b=str(worst_b.get("status")), explanation_b=worst_b.get("explanation"),
                      error_b=worst_b.get("error"), trace_a=ra[0].get("trace_id"), trace_b=worst_b.get("trace_id"))


def compare(run_a: str, run_b: str, *, home: str | Path | None = None) -> Comparison:
    """Per-case regressions and fixes from run A to run B, with aggregate deltas and their stderr."""
    ida, idb = resolve_run(run_a, home), resolve_run(run_b, home)
    return compare_rows(ida, idb, run_rows(ida, home), run_rows(idb, home))


def compare_rows(ida: str, idb: str, rows_a: list[EvalResultRow], rows_b: list[EvalResultRow]) -> Comparison:
    """`compare` over rows read already (the web UI reads them through the collector's SQL workers)."""
    ca, cb = by_case(rows_a), by_case(rows_b)
    shared = sorted(set(ca) & set(cb))
    comp = Comparison(run_a=ida, run_b=idb, task_a=rows_a[0]["task"] if rows_a else "?",
                      task_b=rows_b[0]["task"] if rows_b else "?", paired=len(shared),
                      only_a=sorted(set(ca) - set(cb)), only_b=sorted(set(cb) - set(ca)))
    diffs: dict[str, list[float]] = {"accuracy": [], "score": []}
    per: dict[str, dict[str, list[float]]] = {"a": {"accuracy": [], "score": []}, "b": {"accuracy": [], "score": []}}
    for cid in shared:
        ra, rb = list(ca[cid]), list(cb[cid])
        sa, pa = case_reduce(ra)
        sb, pb = case_reduce(rb)
        per["a"]["accuracy"].append(pa)
        per["a"]["score"].append(sa)
        per["b"]["accuracy"].append(pb)
        per["b"]["score"].append(sb)
        diffs["accuracy"].append(pb - pa)
        diffs["score"].append(sb - sa)
        if pb < pa - 1e-12:
            comp.regressions.append(_change(cid, ra, rb))
        elif pb > pa + 1e-12:
            comp.fixes.append(_change(cid, ra, rb))
        elif abs(sb - sa) > 1e-9:
            comp.changed.append(_change(cid, ra, rb))
    if shared:
        for m in ("accuracy", "score"):
            comp.a[m] = mean(per["a"][m])
            comp.b[m] = mean(per["b"][m])
            comp.delta[m] = mean(diffs[m])
            comp.delta_stderr[m] = stderr(diffs[m])
    comp.regressions.sort(key=lambda c: (c.pass_b - c.pass_a, c.case_id))
    comp.fixes.sort(key=lambda c: (c.pass_a - c.pass_b, c.case_id))
    return comp
