"""OpenEvolve on tracekit: an evaluator that runs each program in the sandbox and returns its metrics
plus artifacts taken from its trace (stack traces, stderr tail, output tail, slowest spans).

    from openevolve import run_evolution
    from tracekit.backends import Experiments
    from tracekit.backends.openevolve import SandboxEvaluator

    exps = Experiments("evolve-solver", metric="score", proposer="openevolve")
    evaluator = SandboxEvaluator(exps, ["python", "evaluate.py"], program_file="solver.py", workspace="target/")
    result = run_evolution("target/solver.py", evaluator, config=config, iterations=20)

OpenEvolve calls `evaluator(program_path)`, in worker processes (the evaluator is pickled: it
carries the run's id and store folder, and rebuilds its `Experiments` there). Each program is one
experiment: written as `program_file` into a copy of `workspace`, run with `command` under the
budget, recorded with its trace; its parent is the run's incumbent (the best so far), since the
evaluator is not told which program OpenEvolve mutated. Artifacts are the trace digest's sections
by name (`errors`, `output`, `slowest`, ...), each under the budget the built-in proposer gives it;
OpenEvolve puts them in the next prompt (`evaluator.enable_artifacts`, on by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ._evaluate import MAX_CANDIDATE_BYTES
from ._experiments import Experiments

ARTIFACT_SECTIONS = ("errors", "output", "slowest", "curves", "eval_cases")


class SandboxEvaluator:
    """`evaluate(program_path) -> EvaluationResult(metrics, artifacts)` for OpenEvolve; see the module doc.

    The metrics are every number the run reported plus `combined_score` (OpenEvolve's fitness:
    the metric, negated when lower is better; `failure_score` when the run failed) and `ok`.
    `feedback="scores"` (the ablation) leaves every trace artifact out: status only.
    """

    def __init__(self, experiments: Experiments, command: Sequence[str] | str, *, program_file: str = "program.py",
                 workspace: str | Path | None = None, budget_s: float = 60.0, failure_score: float = 0.0,
                 sections: Sequence[str] = ARTIFACT_SECTIONS, feedback: str = "traces") -> None:
        if feedback not in ("traces", "scores"):
            raise OptimizerError(f"feedback={feedback!r}: expected 'traces' or 'scores' (the ablation: no artifacts)")
        self.feedback = feedback
        self.exps, self.command, self.program_file = experiments, command, program_file
        self.workspace = Path(workspace).resolve() if workspace is not None else None
        self.budget_s, self.failure_score, self.sections = budget_s, failure_score, tuple(sections)

    def __getstate__(self) -> dict[str, Any]:
        e = self.exps
        return {"exps": {"run_id": e.run_id, "metric": e.metric, "direction": e.direction, "proposer": e.proposer,
                         "home": str(e.home), "project": e.project, "min_delta": e.min_delta},
                "command": self.command, "program_file": self.program_file, "workspace": self.workspace,
                "budget_s": self.budget_s, "failure_score": self.failure_score, "sections": self.sections,
                "feedback": self.feedback}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from .. import _config

        kw = dict(state["exps"])
        if _config._settings is None:  # a fresh worker process: its spans go to the same store
            _config.configure(home=kw["home"], project=kw["project"])
        run_id = kw.pop("run_id")
        self.exps = Experiments(run_id, **kw)
        self.command, self.program_file, self.workspace = state["command"], state["program_file"], state["workspace"]
        self.budget_s, self.failure_score, self.sections = state["budget_s"], state["failure_score"], state["sections"]
        self.feedback = state["feedback"]

    def __call__(self, program_path: str) -> Any:
        from openevolve.evaluation_result import EvaluationResult

        metrics, artifacts = self.evaluate(program_path)
        return EvaluationResult(metrics=metrics, artifacts=dict(artifacts))

    def evaluate(self, program_path: str) -> tuple[dict[str, float], dict[str, str]]:
        """(metrics, artifacts) of one program, without OpenEvolve's types (they are what `__call__` wraps)."""
        try:
            with open(program_path, "rb") as f:
                raw = f.read(MAX_CANDIDATE_BYTES + 1)
        except OSError as exc:
            raise OptimizerError(f"OpenEvolve's program {program_path} cannot be read: {exc}") from None
        text = raw.decode("utf-8", "replace")  # over MAX_CANDIDATE_BYTES: refused by as_files, an invalid experiment
        best = self.exps.incumbent()
        ev = self.exps.evaluate({self.program_file: text}, command=self.command, parent=best["experiment_id"] if best else None,
                                budget_s=self.budget_s, workspace=self.workspace, proposer="openevolve",
                                description=f"OpenEvolve program {Path(program_path).name}"[:200])
        ok = ev.metric is not None and math.isfinite(ev.metric)
        score = (ev.metric if self.exps.direction == "max" else -ev.metric) if ev.metric is not None and ok else self.failure_score
        metrics = {k: float(v) for k, v in ev.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        metrics.update({"combined_score": float(score), "ok": 1.0 if ok else 0.0})
        artifacts: dict[str, str] = {"experiment_id": ev.experiment_id, "status": f"{ev.status} (run: {ev.run_status})"}
        if self.feedback == "scores":
            return metrics, artifacts
        artifacts["trace_id"] = ev.trace_id or ""
        if ev.error:
            artifacts["error"] = ev.error[:4000]
        for name in self.sections:
            body = self.exps.digest(ev, sections=[name])
            if body:
                artifacts[name] = body
        return metrics, artifacts
