"""GEPA on tracekit: a `GEPAAdapter` whose rollouts are tracekit eval runs, and an evaluator for
`gepa.optimize_anything` whose side information is the run's trace digest.

    import gepa
    from tracekit.backends import Experiments
    from tracekit.backends.gepa import TracekitAdapter

    exps = Experiments("gepa-qa", metric="score", proposer="gepa")
    adapter = TracekitAdapter(exps, lambda cand: Task([], solver=make_agent(cand.files["prompt"]), scorers=[...]))
    result = gepa.optimize(seed_candidate={"prompt": seed}, trainset=train, valset=val, adapter=adapter,
                           reflection_lm=my_lm, max_metric_calls=40)

Every `evaluate` GEPA makes is one experiment (`Experiments.evaluate` with the batch as samples):
a row of `experiments` with its trace, each case under its own trace. `make_reflective_dataset`
reads the stored cases back with SQL (`Experiments.case_digest`: input, output, the scorer's
explanation or the error with its traceback tail, the LLM and tool calls in order) under a size
budget, failing cases first: what GEPA's reflection LM reads is what happened, not only a score.
Parents: GEPA reflects on a candidate, then evaluates its mutation on the same minibatch, so a new
candidate's parent is the evaluation of the one last reflected on, on the same batch when there is
one; evaluations of the seed have no parent (each is a baseline for its batch).

`gepa` is imported only by `anything_evaluator`'s callers and GEPA itself; this module needs it
only to build `EvaluationBatch` (the `gepa` extra: `pip install 'tracekit-loop[gepa]'`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ..optimizer._validate import content_hash
from ._evaluate import Evaluation, TaskFactory
from ._experiments import Experiments

REFLECTIVE_BUDGET = 24_000  # characters of one component's reflective records together
RECORD_BUDGET = 4_000  # characters of one record's feedback (a case digest's share of the trajectories section)


def _gepa() -> Any:
    try:
        import gepa
    except ImportError:
        raise OptimizerError("tracekit.backends.gepa needs the gepa package: pip install 'tracekit-loop[gepa]'") from None
    return gepa


def _sample(item: Any, i: int) -> Any:
    from ..evals import Sample

    if isinstance(item, Sample):
        return item
    if isinstance(item, Mapping) and "input" in item:
        return Sample(item["input"], item.get("target"), id=str(item.get("id") or ""),
                      metadata=dict(item.get("metadata") or {}), split=str(item.get("split") or "train"))
    raise OptimizerError(f"GEPA batch item {i} is {type(item).__name__}; give tracekit Samples or dicts with an 'input'")


class TracekitAdapter:
    """GEPA's adapter protocol (`evaluate`, `make_reflective_dataset`) over `Experiments.evaluate` with an
    eval task built per candidate by `task(Candidate)` (the candidate's components are its `files`).
    `feedback="scores"` leaves the traces out of the records (the ablation of `--feedback scores`)."""

    propose_new_texts: Any = None  # GEPA's own instruction proposer (its reflection LM) writes the new texts

    def __init__(self, experiments: Experiments, task: TaskFactory, *, budget_s: float = 120.0,
                 failure_score: float = 0.0, record_budget: int = RECORD_BUDGET, budget: int = REFLECTIVE_BUDGET,
                 feedback: str = "traces") -> None:
        if feedback not in ("traces", "scores"):
            raise OptimizerError(f"feedback={feedback!r}: expected 'traces' (case digests) or 'scores' (ablation: scores only)")
        self.feedback = feedback
        self.exps, self.task, self.budget_s, self.failure_score = experiments, task, budget_s, failure_score
        self.record_budget, self.budget = record_budget, budget
        self.evaluations: list[Evaluation] = []
        self._by_batch: dict[tuple[str, tuple[str, ...]], Evaluation] = {}  # (candidate hash, case ids) -> latest
        self._latest: dict[str, Evaluation] = {}  # candidate hash -> its latest evaluation
        self._parents: dict[str, str | None] = {}  # candidate hash -> the hash it was mutated from
        self._reflected: str | None = None

    def _parent(self, h: str, key: tuple[str, ...]) -> Evaluation | None:
        if h not in self._parents:
            self._parents[h] = self._reflected if self._latest else None
        ph = self._parents[h]
        if ph is None:
            return None
        return self._by_batch.get((ph, key)) or self._latest.get(ph)

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        gepa = _gepa()
        samples = [_sample(x, i) for i, x in enumerate(batch)]
        h, key = content_hash(candidate), tuple(s.id for s in samples)
        ev = self.exps.evaluate(dict(candidate), task=self.task, samples=samples, parent=self._parent(h, key),
                                budget_s=self.budget_s, proposer="gepa", description=f"GEPA rollout on {len(samples)} cases")
        self.evaluations.append(ev)
        self._by_batch[(h, key)], self._latest[h] = ev, ev
        by_case: dict[str, list[Any]] = {}
        for r in (ev.report.rows if ev.report else []):
            by_case.setdefault(r["case_id"], []).append(r)
        outputs, scores, trajectories = [], [], []
        for s in samples:
            rows = by_case.get(s.id, [])
            score = sum(float(r["score"]) for r in rows) / len(rows) if rows else self.failure_score
            scores.append(score if ev.metric is not None else self.failure_score)
            outputs.append(rows[0].get("output") if rows else None)
            trajectories.append({"experiment_id": ev.experiment_id, "case_id": s.id, "input": s.input, "target": s.target,
                                 "score": scores[-1], "passed": all(bool(r["passed"]) for r in rows) if rows else False,
                                 "trace_ids": [r["trace_id"] for r in rows if r.get("trace_id")], "error": ev.error})
        return gepa.EvaluationBatch(outputs=outputs, scores=scores, trajectories=trajectories if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        self._reflected = content_hash(candidate)
        trajectories = list(eval_batch.trajectories or [])
        order = sorted(range(len(trajectories)), key=lambda i: (trajectories[i]["passed"], trajectories[i]["score"], i))
        records: list[dict[str, Any]] = []
        used = 0
        for i in order:
            t = trajectories[i]
            rec = self.record(t, eval_batch.outputs[i] if i < len(eval_batch.outputs) else None)
            size = sum(len(str(v)) for v in rec.values())
            if records and used + size > self.budget:
                break
            records.append(rec)
            used += size
        return {name: records for name in components_to_update}

    def record(self, trajectory: Mapping[str, Any], output: Any) -> dict[str, Any]:
        """One reflective record: the case, what came out, and the case's trace digest as feedback."""
        if self.feedback == "scores":  # the ablation: what GEPA would see without traces
            return {"Inputs": _text(trajectory["input"]), "Generated Outputs": _text(output),
                    "Feedback": f"score {trajectory['score']:.4g} (expected {_text(trajectory['target'])})"}
        parts = [self.exps.case_digest(tid) for tid in trajectory["trace_ids"][:1]]
        feedback = "\n".join(p for p in parts if p) or (
            f"the whole evaluation failed: {trajectory['error']}" if trajectory.get("error") else "(no trace recorded)")
        if len(feedback) > self.record_budget:
            from ..optimizer._section import elide

            feedback = elide(feedback, self.record_budget, keep="head")
        return {"Inputs": _text(trajectory["input"]), "Generated Outputs": _text(output),
                "Feedback": f"score {trajectory['score']:.4g} (expected {_text(trajectory['target'])})\n{feedback}",
                "trace_id": (trajectory["trace_ids"] or [None])[0], "experiment_id": trajectory["experiment_id"]}


def _text(value: Any, limit: int = 2000) -> str:
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def anything_evaluator(experiments: Experiments, command: Sequence[str] | str, *, budget_s: float = 60.0,
                       workspace: str | Path | None = None, failure_score: float = 0.0,
                       text_file: str = "candidate.txt", feedback: str = "traces") -> Callable[..., tuple[float, dict[str, Any]]]:
    """An evaluator for `gepa.optimize_anything`: runs the candidate (a text, written to `text_file`, or a
    dict of files) with `command` in the sandbox and returns (score, side information), the side
    information being the run's status, error, metrics and trace digest. GEPA maximizes: with
    direction "min" the score is the metric negated. A failed run scores `failure_score`. The parent of
    each evaluation is the run's incumbent (the best so far). `feedback="scores"` (the ablation) returns
    the status and metrics only: no error text, no digest."""
    if feedback not in ("traces", "scores"):
        raise OptimizerError(f"feedback={feedback!r}: expected 'traces' or 'scores'")

    def evaluate(candidate: str | dict[str, str], example: object | None = None, **_: Any) -> tuple[float, dict[str, Any]]:
        best = experiments.incumbent()
        ev = experiments.evaluate(candidate, command=command, parent=best["experiment_id"] if best else None, budget_s=budget_s,
                                  workspace=workspace, proposer="gepa", text_file=text_file,
                                  description="optimize_anything candidate")
        side: dict[str, Any] = {"status": ev.status, "run_status": ev.run_status, "experiment_id": ev.experiment_id,
                                "metrics": ev.metrics}
        if feedback == "traces":
            side.update({"trace_id": ev.trace_id, "trace": experiments.digest(ev)})
            if ev.error:
                side["error"] = ev.error
        if ev.metric is None:
            return failure_score, side
        return (ev.metric if experiments.direction == "max" else -ev.metric), side

    return evaluate
