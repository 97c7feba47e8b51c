"""tracekit's eval harness: datasets, scorers, per-case results, and every case a full trace.

    from tracekit.evals import Dataset, Sample, Task, run_eval, scorers

    qa = Task(
        Dataset.load("cases.jsonl"),            # or a list of Samples / dicts, CSV, Parquet
        solver=my_agent,                        # sync or async; or sandboxed([...]) for a command
        scorers=[scorers.includes(), scorers.llm_judge("Correct if it names the city.")],
        epochs=3, time_limit=60,
    )
    report = run_eval(qa, splits=["val"], concurrency=8)
    print(report.summary())                     # accuracy, score, stderr, pass@k ...

    # or from the shell:  tracekit eval run evals/qa.py:qa --split val --epochs 3
    #                     tracekit eval compare RUN_A RUN_B

Results land in the `eval_results` table (one row per case and epoch, with the case's trace id)
and `eval_runs`; join them with `spans`, `llm_calls` and `tool_calls` in SQL. See docs/evals.md.
"""

from __future__ import annotations

from . import scorers
from ._command import CommandFailed, sandboxed
from ._compare import Comparison, compare
from ._metrics import accuracy, mean, pass_at_k, stderr
from ._retry import TransientError, is_transient
from ._runner import EvalReport, run_eval, run_eval_async
from ._sample import SPLITS, Dataset, Sample
from ._score import Score, Scorer
from ._task import Task, load_task, task

__all__ = [
    "CommandFailed",
    "Comparison",
    "Dataset",
    "EvalReport",
    "SPLITS",
    "Sample",
    "Score",
    "Scorer",
    "Task",
    "TransientError",
    "accuracy",
    "compare",
    "is_transient",
    "load_task",
    "mean",
    "pass_at_k",
    "run_eval",
    "run_eval_async",
    "sandboxed",
    "scorers",
    "stderr",
    "task",
]
