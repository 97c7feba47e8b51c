"""Where runs happen: a thin adapter over the sandbox's executors (local pool or Ray), and `Flight`.

A `Flight` is one experiment between its proposal and its decision: the candidate, its spans, the
sandbox handle and the results so far (two with a confirming rerun).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import OptimizerError

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._proposer import Proposal
    from ._validate import Candidate


@dataclass
class Parent:
    """The incumbent a candidate starts from."""

    experiment_id: str | None
    commit: str
    metric: float | None


@dataclass
class Flight:
    experiment_id: str
    seq: int
    baseline: bool
    parent: Parent
    attempt: int = 1
    candidate: "Candidate | None" = None
    proposal: "Proposal | None" = None
    commit: str | None = None
    prompt: str = ""
    proposer: str = ""
    repair_of: str | None = None
    started_at: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.monotonic)
    context_s: float = 0.0
    propose_s: float = 0.0
    validate_s: float = 0.0
    intent: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    handle: Any = None
    root: "Span | None" = None
    run_span: "Span | None" = None


class Executor:
    """submit / wait_any / result / cancel over tracekit.sandbox's LocalExecutor or RayExecutor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def submit(self, spec: Any) -> Any:
        return self.inner.submit(spec)

    def wait_any(self, handles: list[Any], timeout: float) -> set[Any]:
        """Handles among `handles` that are finished, waiting up to `timeout` seconds for one."""
        deadline = time.monotonic() + timeout
        while True:
            done = {h for h in handles if h.done()}
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.02)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handle: Any) -> None:
        self.inner.cancel(handle)

    def close(self) -> None:
        close = getattr(self.inner, "shutdown", None) or getattr(self.inner, "close", None)
        if close is not None:
            close()


def make_executor(name: str, workers: int) -> Executor:
    from tracekit import sandbox

    if name == "local":
        return Executor(sandbox.LocalExecutor(max_workers=workers))
    if name == "ray":
        return Executor(sandbox.RayExecutor(max_workers=workers))
    raise OptimizerError(f"executor {name!r}: use 'local' (a process pool on this machine) or 'ray'")
