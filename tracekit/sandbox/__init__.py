"""tracekit.sandbox: run untrusted candidate code under a budget, contain every fault, capture everything.

    from pathlib import Path
    from tracekit.sandbox import RunSpec, run

    result = run(RunSpec(["python", "train.py"], workspace=Path("target"), budget_s=300, metric="val_bpb"))
    result.status        # ok | crash | timeout | oom | output_limit | no_metric | killed
    result.metrics       # {"val_bpb": 0.99}: from $TRACEKIT_RESULT, else `METRIC name=value` / `val_bpb: 0.99`
    result.stderr.tail   # the last 64 KiB of stderr

Each run gets a fresh copy of the workspace, an allowlisted environment, no network, a
read-only view of the system, memory / process / disk / output caps and a deadline that kills the
whole process tree. Backends: bubblewrap, unshare + Landlock, or (loudly) unisolated local.
Executors: `LocalExecutor` (a bounded pool) and `RayExecutor` (the same sandbox in Ray tasks).
Security model: docs/sandbox.md. `check()` reports what works on this machine.
"""

from __future__ import annotations

from ._check import CheckReport, check
from ._executors import Executor, LocalExecutor, RunHandle
from ._ray import RayExecutor
from ._runner import run
from ._spec import BACKENDS, DEFAULT_ENV_ALLOWLIST, STATUSES, CapturedOutput, RunResult, RunSpec

__all__ = [
    "BACKENDS",
    "CapturedOutput",
    "CheckReport",
    "DEFAULT_ENV_ALLOWLIST",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "RunHandle",
    "RunResult",
    "RunSpec",
    "STATUSES",
    "check",
    "run",
]
