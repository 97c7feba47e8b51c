"""Promotion: the approved chain of a run, squashed into one commit on a branch of the user's repository.

    commit, branch = promote(home, "main")      # refs/heads/tracekit/main-promoted

The commit sits on top of the repository's HEAD, holds the target's editable files as the last
approved keep left them, and its message lists the experiments, the metric before and after with
an interval (from `optimize confirm` when it ran, else from the measured noise), the holdout
result when there is one, and the trace ids. Nothing else changes: no checkout, no index, no
current branch (git plumbing with a private index, as everywhere in the optimizer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ..store._tables import ExperimentRow
from ._gitrepo import GitRepo, git
from ._ledger import Ledger
from ._review import decisions, effective_keeps, load_chain


def user_repo(target_root: Path) -> GitRepo:
    """The git repository that holds the target folder (the user's), seen from the target."""
    top = git("rev-parse", "--show-toplevel", cwd=target_root, check=False)
    if not top:
        raise OptimizerError(f"{target_root} is not inside a git repository: promote writes a branch there. `git init` it "
                             "(and commit), or copy the editable files from the run's branch yourself")
    git_dir = Path(git("rev-parse", "--absolute-git-dir", cwd=target_root))
    prefix = str(Path(target_root).resolve().relative_to(Path(top).resolve()))
    return GitRepo(git_dir, "" if prefix == "." else prefix)


def approved_chain(home: Path, run_id: str, rows: list[ExperimentRow], *, include_unreviewed: bool = False) -> list[tuple[ExperimentRow, str]]:
    keeps = effective_keeps(rows, load_chain(home, run_id))
    got = decisions(home, [r["experiment_id"] for r, _ in keeps])
    rejected = [r["experiment_id"] for r, _ in keeps if (d := got.get(r["experiment_id"])) and d.get("label") == "reject"]
    if rejected:
        raise OptimizerError(f"keeps {', '.join(rejected)} are rejected but still on the branch: run "
                             "`tracekit optimize review` to rebuild it first")
    unreviewed = [r["experiment_id"] for r, _ in keeps if r["experiment_id"] not in got]
    if unreviewed and not include_unreviewed:
        raise OptimizerError(f"keeps {', '.join(unreviewed)} are not reviewed: approve or reject them with "
                             "`tracekit optimize review` (or pass --include-unreviewed)")
    return keeps


def message(run_id: str, rows: list[ExperimentRow], chain: list[tuple[ExperimentRow, str]], run_dir: Path) -> str:
    metric = rows[0].get("metric_name") or "metric"
    base = [m for r in rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
    before = sum(base) / len(base) if base else None
    after = chain[-1][0].get("metric") if chain else before
    confirm = _latest(run_dir, "confirm")
    holdout = _latest(run_dir, "holdout")
    title = f"tracekit: {metric} {fmt(before)} -> {fmt(after)} (run {run_id}, {len(chain)} kept experiment{'s' * (len(chain) != 1)})"
    lines = [title, ""]
    if confirm:
        lines.append(f"Confirmed on {confirm['runs']} fresh runs each: improvement {confirm['improvement']:.4g}, 95% interval "
                     f"[{confirm['low']:.4g}, {confirm['high']:.4g}] ({confirm['candidate']} vs the baseline).")
    else:
        noise = rows[-1].get("noise")
        if noise:
            lines.append(f"Not confirmed by reruns (`tracekit optimize confirm`); the measured run-to-run noise is {noise:.3g}.")
    if holdout:
        lines.append(f"Sealed holdout ({holdout['metric']}): {fmt(holdout['baseline'])} -> {fmt(holdout['candidate'])}; "
                     f"the optimized split moved {holdout['optimized_gain']:+.4g}, the sealed one {holdout['sealed_gain']:+.4g}.")
    lines += ["", "Experiments:"]
    for r, _ in chain:
        lines.append(f"- {r['experiment_id']}: {' '.join(str(r.get('description') or '').split())[:160]} "
                     f"({metric} {fmt(r.get('metric'))}, improvement {fmt(r.get('improvement'))}, trace {r.get('trace_id')})")
    return "\n".join(lines) + "\n"


def fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.6g}"


def _latest(run_dir: Path, kind: str) -> dict[str, Any] | None:
    files = sorted(run_dir.glob(f"{kind}-*.json"))
    if not files:
        return None
    try:
        data: dict[str, Any] = json.loads(files[-1].read_text())
        return data
    except ValueError:
        return None


def promote(home: Path, run_id: str, *, branch: str | None = None, include_unreviewed: bool = False,
            force: bool = False) -> tuple[str, str]:
    """Squash the run's approved chain onto a new branch of the user's repository; (commit, branch)."""
    ledger = Ledger(home, run_id)
    rows = ledger.rows
    chain = approved_chain(home, run_id, rows, include_unreviewed=include_unreviewed)
    if not chain:
        raise OptimizerError(f"run {run_id!r} has no kept experiment to promote")
    meta = json.loads((Path(home) / "optimizer" / run_id / "run.json").read_text())
    run_repo = GitRepo(Path(meta["git_dir"]))  # the run's commits: private repo, or the target's own (its root: no prefix)
    head_commit = chain[-1][1]
    editable = list(meta.get("identity", {}).get("editable", []))
    files = {rel: data for rel in editable if (data := run_repo.read(head_commit, rel)) is not None}
    repo = user_repo(Path(meta["target"]))
    parent = git("rev-parse", "--verify", "-q", "HEAD^{commit}", git_dir=repo.git_dir, check=False) or None
    name = branch or f"tracekit/{run_id}-promoted"
    ref = f"refs/heads/{name}"
    exists = git("rev-parse", "--verify", "-q", ref, git_dir=repo.git_dir, check=False)
    if exists and not force:
        raise OptimizerError(f"branch {name} already exists in {repo.git_dir}; pass --branch NEW or --force to replace it")
    commit = repo.commit(files, parent=parent, message=message(run_id, rows, chain, Path(home) / "optimizer" / run_id))
    repo.set_ref(ref, commit)
    return commit, name

