"""`optimize confirm`: the best candidate and the baseline, rerun N times each on fresh seeds.

A keep was decided on one or two runs against a noise measured on a handful of baseline runs, and
it is the best of many tries: its recorded gain is biased upward (the winner's curse). Confirmation
measures it again the way a skeptic would: N reruns of the candidate (the incumbent after review,
or `--experiment ID`) and N of the baseline, interleaved, each with a fresh random `TRACEKIT_SEED`,
and reports the improvement (candidate mean - baseline mean, positive = better) with a 95%
confidence interval from Welch's t (unequal variances; the t quantile computed here, no SciPy),
next to the improvement the loop's own numbers claimed (the keep's recorded metric against the
baseline runs' mean) and whether that claim falls inside the interval.

The verdict: **confirmed** when every rerun succeeded and the interval's lower end is above the
run's pre-registered `min_delta` (0 by default: the gain is real); otherwise **not-confirmed**.
Stored as `<run>/confirm-<UTC time>.json` (read by `optimize promote`), an annotation on the
experiment (label confirmed | not-confirmed, score the improvement, source confirm) and one trace.

    result = confirm(target_for_run(".", home, "main"), home, "main", runs=5)
    result["improvement"], result["low"], result["high"], result["confirmed"]
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ._rerun import Rerun, failures, values
from ._target import Target

LEVEL = 0.95
RULE = ("confirmed when every rerun succeeded and the lower end of the 95% interval of the improvement "
        "(Welch's t) is above min_delta")


def confirm(target: Target, home: Path, run_id: str, *, runs: int = 5, experiment: str | None = None,
            backend: str = "auto", on_event: Any = None) -> dict[str, Any]:
    """Rerun the candidate and the baseline `runs` times each; store and return the verdict (see module doc)."""
    if runs < 2:
        raise OptimizerError(f"--runs {runs}: an interval needs at least 2 runs of each; use --runs 5 (the default)")
    with Rerun(target, home, run_id, "confirm", backend) as rr:
        row, commit = rr.pick(experiment)
        eid = row["experiment_id"]
        assert rr.root is not None
        rr.root.set_attributes({"tracekit.optimizer.candidate": eid, "tracekit.optimizer.runs": runs})
        measured = rr.measure([("baseline", rr.baseline_commit), ("candidate", commit)], runs, on_event=on_event)
        base, cand = values(measured, "baseline"), values(measured, "candidate")
        failed = failures(measured)
        if len(base) < 2 or len(cand) < 2:
            raise OptimizerError(f"too few reruns succeeded to compare ({len(base)} of the baseline, {len(cand)} of "
                                 f"{eid}, at least 2 each):\n" + "\n".join(failed) + f"\nlogs: {rr.folder}. Fix the "
                                 "cause (a target that fails on other seeds is a finding too) and run confirm again")
        try:
            imp, low, high, df = welch(base, cand, target.better)
        except OverflowError:  # values too large to subtract or square: a metric no one can compare
            imp = low = high = df = math.nan
        recorded = [m for r in rr.rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
        metric = row.get("metric")
        claimed = target.improvement(metric, _mean(recorded)) if metric is not None else None
        ok = not failed and math.isfinite(low) and math.isfinite(high) and low > target.noise.min_delta
        label = "confirmed" if ok else "not-confirmed"
        result: dict[str, Any] = {
            "kind": "confirm", "run_id": run_id, "candidate": eid, "candidate_commit": commit,
            "baseline_commit": rr.baseline_commit, "metric": target.metric, "direction": target.direction, "runs": runs,
            "improvement": imp, "low": low, "high": high, "level": LEVEL, "method": "welch", "df": df,
            "baseline_mean": _mean(base), "candidate_mean": _mean(cand),
            "baseline_values": base, "candidate_values": cand, "recorded_metric": row.get("metric"),
            "claimed_improvement": claimed, "claim_in_interval": claimed is not None and bool(low <= claimed <= high),
            "min_delta": target.noise.min_delta,
            "confirmed": ok, "label": label, "rule": RULE, "failures": failed,
            "seeds": {str(m.index): m.seed for m in measured}, "measurements": [asdict(m) for m in measured],
            "trace_id": rr.trace_id, "series_id": rr.series_id, "created_at": rr.stamp,
        }
        rr.root.set_attributes({"tracekit.optimizer.label": label, "tracekit.optimizer.improvement": imp})
        result["path"] = str(rr.save(result))
        rr.annotate(eid, label, imp, summary(result))
        return result


def summary(r: dict[str, Any]) -> str:
    """One paragraph a human reads (the annotation's note, the CLI's verdict)."""
    text = (f"{r['label']}: {r['candidate']} vs the baseline over {r['runs']} fresh-seed runs each: {r['metric']} "
            f"{r['baseline_mean']:.6g} -> {r['candidate_mean']:.6g}, improvement {r['improvement']:+.4g}, 95% interval "
            f"[{r['low']:+.4g}, {r['high']:+.4g}] (Welch, df {r['df']:.3g}).")
    claimed = r.get("claimed_improvement")
    if claimed is not None:
        where = "inside" if r["claim_in_interval"] else "above" if claimed > r["high"] else "below"
        text += f" The loop's numbers claimed {claimed:+.4g} over the baseline: {where} the interval."
    if r["failures"]:
        text += f" {len(r['failures'])} rerun(s) failed: " + "; ".join(r["failures"])[:600]
    return text


def _mean(xs: list[float]) -> float:
    try:
        return statistics.fmean(xs)
    except OverflowError:
        return math.nan


def welch(base: list[float], cand: list[float], better: int) -> tuple[float, float, float, float]:
    """(improvement, low, high, degrees of freedom): the 95% Welch interval of (mean(cand) - mean(base)) x better."""
    nb, nc = len(base), len(cand)
    imp = (statistics.fmean(cand) - statistics.fmean(base)) * better
    sb, sc = statistics.variance(base) / nb, statistics.variance(cand) / nc
    se2 = sb + sc
    if se2 == 0:
        return imp, imp, imp, math.inf  # identical reruns (a deterministic target): no spread to allow for
    df = se2 ** 2 / (sb ** 2 / (nb - 1) + sc ** 2 / (nc - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(se2)
    return imp, imp - half, imp + half, df


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile (p > 0.5) of Student's t with `df` degrees of freedom, by bisection on its CDF."""
    if not math.isfinite(df) or df > 1e7:
        return statistics.NormalDist().inv_cdf(p)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for aa in (m * (b - m) * x / ((a - 1 + 2 * m) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1 + 2 * m))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 3e-14:
            break
    return h
