"""Small real targets, a scripted proposer and a check of a run's git branch, for the optimizer tests.

The bowl target is a Python script whose metric depends on three tunables (a learning rate, a
width and a mode); it logs a short loss curve through tracekit, so the store has spans and metric
points for it, and finishes in well under a second in the sandbox.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracekit.optimizer import Optimizer, Proposal, ProposalContext, Summary, load_target
from tracekit.optimizer._ledger import keeps_in_order

BOWL = textwrap.dedent('''\
    """A tiny target: val_loss is a bowl over three settings (best: LR=0.4, WIDTH=32, MODE="b")."""
    # --- tunable ---
    LR = 0.1  # learning rate
    WIDTH = 8  # model width
    MODE = "a"  # one of "a", "b" or "c"
    # --- end tunable ---
    import math
    import os
    import time

    import tracekit

    PENALTY = {"a": 0.5, "b": 0.0, "c": 1.0}


    @tracekit.trace(kind="chain")
    def compute_loss(lr: float, width: int, mode: str) -> float:
        return (math.log10(lr) - math.log10(0.4)) ** 2 + ((width - 32) / 32) ** 2 + PENALTY[mode] + 1.0


    def main() -> None:
        with tracekit.span("train", kind="run"):
            for step in range(1, 6):
                tracekit.log_metric("train_loss", 3.0 / step + LR, step=step)
            time.sleep(float(os.environ.get("BOWL_SLEEP", "0")))
            loss = compute_loss(LR, WIDTH, MODE)
        print(f"val_loss: {loss:.6f}")


    main()
''')

TOML = textwrap.dedent('''\
    [target]
    editable = ["train.py"]
    run = "python train.py"
    metric = "val_loss"
    direction = "min"
    budget_s = {budget}
    {extra}
    [noise]
    baseline_runs = {baseline_runs}
''')


def make_target(root: Path, *, script: str = BOWL, budget: float = 20, baseline_runs: int = 1, extra: str = "",
                git_repo: bool = False, files: dict[str, str] | None = None) -> Path:
    """Write a target folder (train.py + tracekit.toml [+ files]); optionally make it its own git repo."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(script)
    (root / "tracekit.toml").write_text(TOML.format(budget=budget, baseline_runs=baseline_runs, extra=extra))
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if git_repo:
        git_init(root)
    return root


def git_init(root: Path) -> None:
    """Make `root` a git repository of its own with everything in it committed on branch `work`."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    for cmd in (["git", "init", "-q", "-b", "work"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(cmd, cwd=root, check=True, env=env, capture_output=True)


def replace_line(old: str, new: str, rationale: str = "") -> Callable[[ProposalContext], Proposal]:
    """A proposal step: SEARCH/REPLACE one line of train.py."""
    def step(ctx: ProposalContext) -> Proposal:
        text = f"RATIONALE: {rationale or f'{old} -> {new}'}\n\ntrain.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"
        return Proposal(text=text, raw_output=text)
    return step


class ScriptedProposer:
    """A Proposer that plays a list of steps (callables of the context); records every context it saw."""

    name = "scripted"

    def __init__(self, steps: list[Callable[[ProposalContext], Proposal]]) -> None:
        self.steps = list(steps)
        self.contexts: list[ProposalContext] = []

    def propose(self, ctx: ProposalContext) -> Proposal:
        from tracekit.optimizer import ProposerExhausted

        self.contexts.append(ctx)
        if not self.steps:
            raise ProposerExhausted("script finished")
        return self.steps.pop(0)(ctx)


def optimize(target_dir: Path, **kw: Any) -> Summary:
    events: list[tuple[str, dict[str, Any]]] = kw.pop("events", [])
    opt = Optimizer(load_target(target_dir, kw.pop("overrides", None)), on_event=lambda k, d: events.append((k, d)), **kw)
    return opt.run()


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def git_dir(home: Path) -> Path:
    return home / "optimizer" / "repo.git"


def check_git(home: Path, rows: list[dict[str, Any]], repo: Path | None = None) -> None:
    """The branch holds exactly the baseline and the keeps, in order; every candidate has a ref."""
    gd = ["--git-dir", str(repo or git_dir(home))]
    keeps = keeps_in_order(rows)  # with parallel workers the branch order is the decision order
    head = git(home, *gd, "rev-parse", "tracekit/main")
    assert head == (keeps[-1]["candidate_commit"] if keeps else rows[0]["candidate_commit"])
    chain = git(home, *gd, "rev-list", "tracekit/main").splitlines()
    base = rows[0]["candidate_commit"]
    assert chain[: len(keeps)] == [r["candidate_commit"] for r in reversed(keeps)] and base in chain
    refs = git(home, *gd, "for-each-ref", "--format=%(refname)", "refs/tracekit/main/").splitlines()
    tried = {r["experiment_id"] for r in rows if r["status"] not in ("baseline", "invalid")}
    assert {ref.rsplit("/", 1)[1] for ref in refs} == tried
