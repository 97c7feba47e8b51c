"""One evaluation of a candidate: its files written into a fresh workspace, then a command in the
sandbox or an eval task, under a budget; the outcome as an `Evaluation`.

A candidate comes from an optimizer we do not control (an LLM's rewrite, a GEPA mutation, an
OpenEvolve program): its file names and sizes are checked before anything is written, and the
files are written by `optimizer._safefs` (no '..', no absolute path, never through a link), so a
hostile name becomes an `invalid` evaluation with its reason, never a file outside the workspace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import OptimizerError
from ..optimizer._safefs import Dir, copy_tree, own_dir, path_problem, remove_tree

if TYPE_CHECKING:
    from ..evals import EvalReport, Task
    from ..sandbox import RunResult

MAX_CANDIDATE_BYTES = 8 * 2**20  # all of a candidate's files together
MAX_FILES = 256
TEXT_FILE = "candidate.txt"  # where a text candidate is written


@dataclass(frozen=True)
class Candidate:
    """What an eval-task factory receives: the candidate's files and the workspace they were written to."""

    files: dict[str, str]
    workspace: Path

    @property
    def text(self) -> str:
        """The candidate's one file (a text candidate), or its files joined with their names."""
        if len(self.files) == 1:
            return next(iter(self.files.values()))
        return "\n\n".join(f"# {k}\n{v}" for k, v in sorted(self.files.items()))


TaskFactory = Callable[[Candidate], "Task"]


@dataclass
class Evaluation:
    """A candidate's evaluation, as recorded: its row's status and metric, and where its evidence is.

    `status` is the ledger's (baseline | keep | discard | crash | timeout | invalid); `run_status`
    the sandbox's (ok | crash | timeout | oom | ...) or, for an eval task, ok / error. `trace_id` is
    the experiment's trace (the sandbox run is a span in it); `case_trace_ids` are the eval cases'
    own traces, in case order. `metric` is None whenever the run failed: never a made-up 0.
    """

    experiment_id: str
    status: str
    run_status: str
    metric: float | None
    metrics: dict[str, float]
    files: dict[str, str]
    trace_id: str | None = None
    case_trace_ids: list[str] = field(default_factory=list)
    error: str | None = None
    improvement: float | None = None
    parent_id: str | None = None
    result: "RunResult | None" = None
    report: "EvalReport | None" = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.metric is not None

    @property
    def improved(self) -> bool:
        """A new incumbent: the first evaluation of a run, or a keep."""
        return self.status in ("baseline", "keep")


def as_files(candidate: Mapping[str, str] | str, text_file: str = TEXT_FILE) -> dict[str, str]:
    """The candidate as {relative path: text}; raises OptimizerError saying what is wrong with it."""
    if isinstance(candidate, str):
        candidate = {text_file: candidate}
    if not isinstance(candidate, Mapping) or not candidate:
        raise OptimizerError(f"a candidate is a non-empty {{path: text}} mapping or a string, got {type(candidate).__name__}")
    if len(candidate) > MAX_FILES:
        raise OptimizerError(f"the candidate has {len(candidate)} files; at most {MAX_FILES}")
    total = 0
    out: dict[str, str] = {}
    for rel, text in candidate.items():
        problem = path_problem(rel)
        if problem:
            raise OptimizerError(f"candidate file {problem}; name files relative to the workspace, without '..'")
        if not isinstance(text, str):
            raise OptimizerError(f"candidate file {rel!r} holds {type(text).__name__}, not text")
        try:
            total += len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise OptimizerError(f"candidate file {rel!r} is not valid text (a lone surrogate); give UTF-8 text") from None
        if total > MAX_CANDIDATE_BYTES:
            raise OptimizerError(f"the candidate is over {MAX_CANDIDATE_BYTES // 2**20} MiB; keep candidates to source text")
        out[str(rel)] = text
    return out


def materialize(files: Mapping[str, str], base: Path | None, dest: Path, anchor: Path) -> Path:
    """`dest` = a copy of `base` (if any) with the candidate's files written over it, by fd, links refused."""
    own_dir(dest.parent, anchor=anchor)
    remove_tree(dest, anchor=anchor)
    if base is not None:
        copy_tree(Path(base), dest, exclude=(".git", ".tracekit", "__pycache__"))
    else:
        own_dir(dest, anchor=anchor)
    with Dir.open(dest, anchor=anchor) as d:
        for rel, text in files.items():
            d.write(rel, text)
    return dest


def run_command(command: Sequence[str] | str, workspace: Path, *, metric: str, budget_s: float, experiment_id: str,
                run_dir: Path, memory_mb: int | None, env: Mapping[str, str]) -> "RunResult":
    from ..sandbox import RunSpec, run

    spec = RunSpec(command, workspace=workspace, budget_s=budget_s, metric=metric, experiment_id=experiment_id,
                   run_dir=run_dir, memory_mb=memory_mb, env=dict(env), grace_s=min(5.0, budget_s))
    return run(spec)


def run_task(task: "Task | TaskFactory", candidate: Candidate, *, metric: str, budget_s: float, experiment_id: str,
             splits: Sequence[str] | None, samples: Sequence[Any] | None) -> tuple["EvalReport", float | None]:
    """The eval task (built for this candidate when given a factory) over the chosen cases, every case
    under `budget_s`; its metric from the report (`score`, `accuracy`, ... of `summarize`)."""
    from ..evals import Task, run_eval

    built = task if isinstance(task, Task) else task(candidate)
    if not isinstance(built, Task):
        raise OptimizerError(f"the task factory returned {type(built).__name__}, not a tracekit.evals.Task")
    if samples is not None:
        built = Task(list(samples), solver=built.solver, scorers=built.scorers, name=built.name, epochs=built.epochs,
                     time_limit=built.time_limit, concurrency=built.concurrency, retries=built.retries,
                     retry_on=built.retry_on, pass_k=built.pass_k, metadata=built.metadata)
    limit = min(built.time_limit or budget_s, budget_s)
    report = run_eval(built, splits=splits, experiment_id=experiment_id, time_limit=limit, write_metrics=False)
    value = report.metrics.get(metric)
    return report, (value if value is not None and math.isfinite(value) else None)
