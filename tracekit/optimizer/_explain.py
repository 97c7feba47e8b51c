"""Why an experiment was kept, discarded or failed, in one line with its numbers.

    reason(row)   # "discard: 2.82 is 0.019 better than the incumbent 2.839, under the keep threshold 0.05 (2 x noise 0.025)"

Stored in the `reason` column when the experiment is decided, and shown wherever decisions are:
the live display, `optimize status`, summary.md, the progress plot. Computed only from the row's
own columns, so a row read back explains itself the same way.
"""

from __future__ import annotations

from ..store._tables import ExperimentRow


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:.6g}"


def _how_threshold(row: ExperimentRow) -> str:
    thr, noise = row.get("threshold"), row.get("noise")
    runs = len(row.get("metric_runs") or []) or 1
    if thr is None:
        return ""
    if noise:
        per = f" / sqrt({runs})" if runs > 1 else ""
        return f" (the noise rule: {_g(thr)} from a baseline stdev of {_g(noise)}{per}, or min_delta if larger)"
    if noise == 0:
        return " (min_delta: the baseline runs did not vary)"
    return " (min_delta; the noise is not measured yet)"


def reason(row: ExperimentRow) -> str:
    """One line: the decision and the numbers that made it."""
    status = row["status"]
    metric, parent = row.get("metric"), row.get("parent_metric")
    imp, thr = row.get("improvement"), row.get("threshold")
    runs = row.get("metric_runs") or []
    measured = f"the mean of {len(runs)} runs, {_g(metric)}," if len(runs) > 1 else _g(metric)
    if status == "baseline":
        return f"baseline: {_g(metric)} with the unmodified code (the baseline runs measure the noise)"
    if status in ("crash", "timeout"):
        last = (row.get("error") or row.get("run_status") or status).strip().splitlines()
        return f"{status}: {last[-1][:240] if last else status}"
    if status == "invalid":
        return f"invalid, no run spent: {(row.get('error') or '').strip()[:240]}"
    if imp is None or thr is None:
        return f"{status}: {_g(metric)}"
    how = _how_threshold(row)
    if status == "keep":
        return f"keep: {measured} beats the incumbent {_g(parent)} by {_g(imp)}, more than the keep threshold {_g(thr)}{how}"
    if imp > 0:
        return (f"discard: {measured} is {_g(imp)} better than the incumbent {_g(parent)}, but not by more than the keep "
                f"threshold {_g(thr)}{how}")
    if imp == 0:
        return f"discard: {measured} equals the incumbent {_g(parent)}"
    return f"discard: {measured} is {_g(-imp)} worse than the incumbent {_g(parent)}"


def reason_of(row: ExperimentRow) -> str:
    """The stored reason, or (rows written before the column existed) the one computed now."""
    return row.get("reason") or reason(row)


def short_reason(row: ExperimentRow) -> str:
    """The decision's numbers in a few words, for narrow tables: `+0.019 <= threshold 0.05`; a keep's
    alarms counted first (`2 ALARMS; +0.38 > threshold 0.05`)."""
    alarms = row.get("alarms") or []
    text = _short(row)
    return f"{len(alarms)} ALARM{'S' if len(alarms) > 1 else ''}; {text}" if alarms else text


def _short(row: ExperimentRow) -> str:
    status = row["status"]
    imp, thr = row.get("improvement"), row.get("threshold")
    if status in ("keep", "discard") and imp is not None and thr is not None:
        if status == "keep":
            return f"{imp:+.3g} > threshold {thr:.3g}"
        return f"{imp:+.3g} <= threshold {thr:.3g}" if imp > 0 else f"{imp:+.3g}: worse" if imp < 0 else "no change"
    if status in ("crash", "timeout", "invalid"):
        last = (row.get("error") or row.get("run_status") or status).strip().splitlines()
        return last[-1][:120] if last else status
    return ""
