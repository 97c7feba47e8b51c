"""`optimize holdout`: score the sealed split for the baseline and the reviewed best candidate.

For a target whose metric is an eval suite, `[holdout]` in tracekit.toml names a command that
scores a sealed split, its metric and the sealed files. Those files never enter an optimization
run's workspace, the base, the proposer's scratch copy or its context folder (every copy of the
target skips them, see `copy_target`), so neither the proposer nor the keep rule ever sees them.
Here, after the loop, each arm's workspace gets them back (read from the target without following
links, and checked against the SHA-256 the run pre-registered) and the holdout command runs in the
sandbox, `--runs` times per arm on fresh seeds.

The report puts the gain on the optimized split (the candidate's recorded metric against the
baseline's mean; the latest `optimize confirm` of the same commit when there is one) next to the
gain on the sealed split. **Overfitting alarm** (the rule): the optimized split gained, and the
sealed split kept less than half of that gain (`sealed_gain < 0.5 x optimized_gain`; both in
the target's direction, positive = better, so a sealed loss always trips it). Printed, stored in
`<run>/holdout-<UTC time>.json` (`baseline` and `candidate` are the sealed metric's values, `experiment`
the candidate's id; `optimize promote` reads it) and as an annotation on the experiment (label overfitting |
holdout-held, score the sealed gain, source holdout).

    result = holdout(target_for_run(".", home, "main"), home, "main")
    result["optimized_gain"], result["sealed_gain"], result["alarm"]
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ._rerun import Rerun, failures, values
from ._target import Target

RATIO = 0.5
RULE = (f"overfitting when the optimized split gained and the sealed split kept less than {RATIO:g} of that gain "
        "(sealed_gain < 0.5 x optimized_gain, both positive = better)")


def holdout(target: Target, home: Path, run_id: str, *, runs: int = 1, experiment: str | None = None,
            backend: str = "auto", on_event: Any = None) -> dict[str, Any]:
    """Score the sealed split for the baseline and the candidate; store and return the report (see module doc)."""
    hold = target.holdout
    if hold is None:
        raise OptimizerError(f"target {target.root} has no [holdout] section in tracekit.toml: add run = \"the command "
                             "that scores the sealed split\", metric = \"its metric\" and files = [\"the sealed files\"] "
                             "before starting a run (a holdout added later was not sealed from it)")
    with Rerun(target, home, run_id, "holdout", backend) as rr:
        reg = rr.session.meta.get("registration") or {}
        registered = reg.get("holdout")
        if not registered or reg.get("recorded_on_resume"):
            raise OptimizerError(f"run {run_id!r} was not started with this [holdout] section, so its files were not "
                                 "sealed from the proposer and the runs; start a new run (--tag NEW) to use it")
        sealed = target.read_files(target.sealed, "sealed")
        changed = sorted(rel for rel, data in sealed.items()
                         if hashlib.sha256(data).hexdigest() != (registered.get("files") or {}).get(rel))
        if changed:
            raise OptimizerError(f"the sealed files {changed} changed since run {run_id!r} pre-registered them; a split "
                                 "edited after seeing results is not a holdout. Restore them, or start a new run")
        row, commit = rr.pick(experiment)
        eid = row["experiment_id"]
        assert rr.root is not None
        rr.root.set_attributes({"tracekit.optimizer.candidate": eid, "tracekit.optimizer.runs": runs})
        measured = rr.measure([("baseline", rr.baseline_commit), ("candidate", commit)], runs, command=list(hold.run)
                              if isinstance(hold.run, tuple) else hold.run, metric=hold.metric, budget_s=hold.budget_s,
                              extra_files=sealed, on_event=on_event)
        base, cand = values(measured, "baseline"), values(measured, "candidate")
        failed = failures(measured)
        if not base or not cand:
            raise OptimizerError(f"the holdout command did not report {hold.metric} for "
                                 f"{'the baseline' if not base else eid}:\n" + "\n".join(failed)
                                 + f"\nlogs: {rr.folder}. Fix [holdout] run (it must print {hold.metric}) and run it again")
        b, c = _mean(base), _mean(cand)
        sealed_gain = target.improvement(c, b)
        optimized_gain, source = _optimized_gain(target, rr, row, commit)
        alarm = overfitting(optimized_gain, sealed_gain)
        result: dict[str, Any] = {
            "kind": "holdout", "run_id": run_id, "candidate_commit": commit,
            "baseline_commit": rr.baseline_commit, "metric": hold.metric, "direction": target.direction, "runs": runs,
            "experiment": eid, "baseline": b, "candidate": c, "baseline_values": base, "candidate_values": cand,
            "optimized_metric": target.metric, "optimized_gain": optimized_gain, "optimized_gain_from": source,
            "sealed_gain": sealed_gain, "alarm": alarm, "rule": RULE, "failures": failed,
            "sealed_files": registered.get("files"), "measurements": [asdict(m) for m in measured],
            "trace_id": rr.trace_id, "series_id": rr.series_id, "created_at": rr.stamp,
        }
        rr.root.set_attributes({"tracekit.optimizer.sealed_gain": sealed_gain, "tracekit.optimizer.alarm": alarm or ""})
        result["path"] = str(rr.save(result))
        rr.annotate(eid, "overfitting" if alarm else "holdout-held", sealed_gain, report(result))
        return result


def _optimized_gain(target: Target, rr: Rerun, row: Any, commit: str) -> tuple[float, str]:
    """The candidate's gain on the optimized split: the latest confirm of this commit, else the ledger's numbers."""
    for path in sorted(rr.session.dir.glob("confirm-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("candidate_commit") == commit and isinstance(data.get("improvement"), (int, float)):
            return float(data["improvement"]), f"confirm ({path.name})"
        break  # only the latest confirm counts
    base = [m for r in rr.rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
    metric = row.get("metric")
    if metric is None or not base:
        raise OptimizerError(f"{row['experiment_id']} has no recorded metric to compare the sealed split with; pick a "
                             "measured candidate (--experiment ID)")
    return target.improvement(metric, statistics.fmean(base)), "ledger (the keep's recorded metric vs the baseline mean)"


def _mean(xs: list[float]) -> float:
    try:
        return statistics.fmean(xs)
    except OverflowError:
        return math.nan


def overfitting(optimized_gain: float, sealed_gain: float) -> str | None:
    """The alarm's text when the rule trips (see RULE), else None."""
    if not math.isfinite(sealed_gain):
        return (f"the sealed split's scores cannot be compared (gain {sealed_gain}): a metric must be a finite number "
                "of moderate size; read the runs' output before trusting this candidate")
    if optimized_gain <= 0:
        return None
    if sealed_gain < RATIO * optimized_gain:
        return (f"overfitting: the sealed split moved {sealed_gain:+.4g}, less than {RATIO:g} x the optimized split's "
                f"{optimized_gain:+.4g}; the kept changes may fit the optimized cases rather than the task")
    return None


def report(r: dict[str, Any]) -> str:
    text = (f"holdout of {r['experiment']}: optimized split ({r['optimized_metric']}) gain {r['optimized_gain']:+.4g}; "
            f"sealed split ({r['metric']}) {r['baseline']:.4g} -> {r['candidate']:.4g}, gain {r['sealed_gain']:+.4g} over "
            f"{r['runs']} run(s) each.")
    return text + (f" ALARM {r['alarm']}" if r["alarm"] else " No overfitting alarm.")
