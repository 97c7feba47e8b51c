"""Pre-registration: what a run committed to before its baseline ran, kept in the ledger for all to see.

An unattended loop optimizes whatever the metric rewards, so the rules of the game are written down
before the first measurement and cannot move afterwards: the metric and its direction, the threshold
rule (min_delta, noise_mult, baseline_runs, confirm), the run command, the editable files, the fixed
files with their SHA-256, the budget and limits, and the sealed holdout (its command, metric and the
sealed files' SHA-256). `Session` writes this record into run.json when it creates a run; every
baseline row of `experiments` carries it in its `registration` column; `optimize status` prints it.
Resuming with another threshold rule is refused here (the other settings through the run's identity).

    SELECT registration->>'$.threshold_rule' FROM experiments WHERE status = 'baseline'
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._errors import OptimizerError

if TYPE_CHECKING:
    from ..store._tables import ExperimentRow
    from ._target import Target

RULE = "keep when the improvement over the incumbent > max(min_delta, noise_mult x noise / sqrt(runs))"


def threshold_rule(target: "Target") -> dict[str, Any]:
    n = target.noise
    return {"min_delta": n.min_delta, "noise_mult": n.noise_mult, "baseline_runs": n.baseline_runs, "confirm": n.confirm}


def registration(target: "Target", fixed_hashes: dict[str, str], registered_at: str) -> dict[str, Any]:
    """The record written before the baseline (the sealed files are hashed now, from the target)."""
    t = target
    holdout = None
    if t.holdout is not None:
        holdout = {**t.holdout.settings(), "files": t.sealed_hashes()}
    return {
        "registered_at": registered_at, "metric": t.metric, "direction": t.direction,
        "threshold_rule": {**threshold_rule(t), "rule": RULE},
        "run": t.run if isinstance(t.run, str) else list(t.run), "setup": t.setup, "editable": list(t.editable),
        "fixed": dict(fixed_hashes),
        "budget": {"budget_s": t.budget_s, "grace_s": t.grace_s, "memory_mb": t.memory_mb, "max_procs": t.max_procs,
                   "disk_mb": t.disk_mb, "output_bytes": t.output_bytes, "network": t.network},
        "holdout": holdout,
    }


def check(run_id: str, registered: dict[str, Any], target: "Target") -> None:
    """Refuse a threshold rule other than the registered one (identity covers metric, files, command, budget)."""
    old = {k: v for k, v in (registered.get("threshold_rule") or {}).items() if k != "rule"}
    new = threshold_rule(target)
    changed = sorted(k for k in new if old.get(k) != new[k])
    if changed:
        was = ", ".join(f"{k} {old.get(k)!r}" for k in changed)
        now = ", ".join(f"{k} {new[k]!r}" for k in changed)
        raise OptimizerError(f"run {run_id!r} pre-registered its threshold rule before its baseline ({was}); the target "
                             f"now says {now}. Restore [noise] (or the flags), or start a new run with --tag NEW")


def of_rows(rows: "list[ExperimentRow]") -> dict[str, Any] | None:
    """The registration the ledger's baseline rows carry (None for a run recorded before registrations)."""
    for r in rows:
        text = r.get("registration") if r["status"] == "baseline" else None
        if text:
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def describe(reg: dict[str, Any]) -> list[str]:
    """The registration in a few lines for `optimize status` (plain text; the caller cleans it for the terminal)."""
    rule = reg.get("threshold_rule") or {}
    budget = reg.get("budget") or {}
    lines = [f"pre-registered {reg.get('registered_at') or '?'}: {reg.get('metric')} "
             f"({'lower' if reg.get('direction') == 'min' else 'higher'} is better), run {_cmd(reg.get('run'))}",
             f"  threshold: improvement > max(min_delta {rule.get('min_delta')}, {rule.get('noise_mult')} x noise / "
             f"sqrt(runs)); {rule.get('baseline_runs')} baseline runs; confirm {rule.get('confirm')}",
             f"  budget {budget.get('budget_s')} s per run; editable {', '.join(reg.get('editable') or []) or '-'}"]
    fixed = reg.get("fixed") or {}
    if fixed:
        lines.append("  fixed: " + ", ".join(f"{rel} sha256:{str(h)[:12]}" for rel, h in fixed.items()))
    hold = reg.get("holdout")
    if hold:
        lines.append(f"  holdout: {hold.get('metric')} by {_cmd(hold.get('run'))}; sealed "
                     + ", ".join(f"{rel} sha256:{str(h)[:12]}" for rel, h in (hold.get("files") or {}).items()))
    else:
        lines.append("  holdout: none")
    return lines


def _cmd(run: Any) -> str:
    return " ".join(run) if isinstance(run, list) else str(run)
