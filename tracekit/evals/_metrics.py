"""Aggregates over an eval run: mean, accuracy, standard error, pass@k.

    metrics = summarize(rows, scorer_names=["exact"], epochs=3)
    metrics["accuracy"], metrics["accuracy_stderr"], metrics["pass_at_3"]

Cases are the unit: with several epochs a case's epochs are first reduced (mean score, pass rate),
then averaged over cases, and the standard error is over cases (epochs of one case are not
independent samples). A crashed or timed-out case counts as a failure with score 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .._util.jsonutil import loads_limited
from ..store._tables import EvalResultRow


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / sqrt(n); 0.0 for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    m = mean(values)
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)


def accuracy(passed: Sequence[bool]) -> float:
    return mean([1.0 if p else 0.0 for p in passed])


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n attempts with c passes: 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): need 0 < k <= n and 0 <= c <= n")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _scores_json(row: EvalResultRow) -> dict[str, Any]:
    raw = row.get("scores")
    if isinstance(raw, str):
        try:
            return dict(loads_limited(raw))
        except ValueError:
            return {}
    return dict(raw or {})


def by_case(rows: Iterable[EvalResultRow]) -> dict[str, list[EvalResultRow]]:
    out: dict[str, list[EvalResultRow]] = {}
    for r in rows:
        out.setdefault(str(r["case_id"]), []).append(r)
    return out


def case_reduce(rows: Sequence[EvalResultRow], scorer: str | None = None) -> tuple[float, float]:
    """(mean score, pass rate) of one case's epochs; for `scorer`, that scorer's, else the case's."""
    scores: list[float] = []
    passes: list[float] = []
    for r in rows:
        if scorer is None:
            scores.append(float(r.get("score") or 0.0))
            passes.append(1.0 if r.get("passed") else 0.0)
        else:
            s = _scores_json(r).get(scorer) or {}
            scores.append(float(s.get("value") or 0.0))
            passes.append(1.0 if s.get("passed") else 0.0)
    return mean(scores), mean(passes)


def summarize(rows: Sequence[EvalResultRow], scorer_names: Sequence[str], pass_k: Iterable[int] = ()) -> dict[str, float]:
    """The run's metrics from its eval_results rows (one per case and epoch)."""
    cases = by_case(rows)
    out: dict[str, float] = {"cases": float(len(cases)), "rows": float(len(rows))}
    if not cases:
        return out
    reduced = [case_reduce(rs) for rs in cases.values()]
    case_scores = [s for s, _ in reduced]
    case_pass = [p for _, p in reduced]
    out["score"] = mean(case_scores)
    out["score_stderr"] = stderr(case_scores)
    out["accuracy"] = mean(case_pass)
    out["accuracy_stderr"] = stderr(case_pass)
    out["errors"] = float(sum(1 for r in rows if r.get("status") == "error"))
    out["timeouts"] = float(sum(1 for r in rows if r.get("status") == "timeout"))
    if len(scorer_names) > 1:
        for name in scorer_names:
            per = [case_reduce(rs, name) for rs in cases.values()]
            out[f"{name}.mean"] = mean([s for s, _ in per])
            out[f"{name}.stderr"] = stderr([s for s, _ in per])
            out[f"{name}.accuracy"] = mean([p for _, p in per])
    splits = sorted({str(r.get("split")) for r in rows if r.get("split")})
    if len(splits) > 1:  # per split, so a loop can keep / discard on val while reading train traces
        for sp in splits:
            part = [case_reduce(rs) for rs in cases.values() if rs[0].get("split") == sp]
            out[f"{sp}.cases"] = float(len(part))
            out[f"{sp}.accuracy"] = mean([p for _, p in part])
            out[f"{sp}.score"] = mean([s for s, _ in part])
    epochs = min(len(rs) for rs in cases.values())
    ks = sorted({k for k in pass_k if 0 < k <= epochs} | ({1, epochs} if epochs > 1 else set()))
    for k in ks:
        vals = [pass_at_k(len(rs), sum(1 for r in rs if r.get("passed")), k) for rs in cases.values()]
        out[f"pass_at_{k}"] = mean(vals)
    return out


PRIMARY_METRIC = "accuracy"
