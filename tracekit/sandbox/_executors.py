"""Executors decide where runs happen. `LocalExecutor` is a bounded pool of supervisor threads.

    with LocalExecutor(max_workers=2) as ex:
        handles = [ex.submit(spec) for spec in specs]
        for h in ex.as_completed(handles):
            print(h.spec.name, h.result().status)

`as_completed` yields handles (like `concurrent.futures.as_completed`); `handle.result()` is the
`RunResult`. A cancelled run's result has status "killed" (it is never an exception).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed as futures_as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._errors import SandboxError
from ._spec import CapturedOutput, RunResult, RunSpec


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (so a run submitted inside a span is its child)."""
    from opentelemetry import trace as otel_trace

    from ._spans import traceparent_of

    return traceparent_of(otel_trace.get_current_span())


def prepare_spec(spec: RunSpec) -> RunSpec:
    """Pin what must be decided at submit time: parent span, store, absolute paths."""
    from .._config import get_settings

    spec.validate()
    changes: dict[str, Any] = {}
    if spec.traceparent is None:
        tp = current_traceparent()
        if tp is not None:
            changes["traceparent"] = tp
    if spec.trace_home is None:
        changes["trace_home"] = Path(get_settings().home).resolve()
    if spec.workspace is not None:
        changes["workspace"] = Path(spec.workspace).resolve()
    if spec.run_dir is not None:
        changes["run_dir"] = Path(spec.run_dir).resolve()
    return replace(spec, **changes) if changes else spec


def killed_result(spec: RunSpec, run_id: str, error: str) -> RunResult:
    """The result of a run that never ran or whose worker died: status killed, nothing measured."""
    empty = CapturedOutput("", "", 0, False, Path("/dev/null"))
    return RunResult(run_id=run_id, status="killed", exit_code=None, signal=None, wall_s=0.0, cpu_s=None,
                     peak_memory_mb=None, metrics={}, metric_source=None, error=error, stdout=empty, stderr=empty,
                     changed_files=[], workspace=Path(spec.workspace or "."), run_dir=Path(spec.run_dir or "."),
                     backend=spec.backend, limits={}, trace_id=None, span_id=None,
                     experiment_id=spec.experiment_id or run_id, metric=spec.metric)


class RunHandle(ABC):
    """One submitted run."""

    spec: RunSpec
    run_id: str

    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def result(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends (TimeoutError after `timeout` seconds); never raises for a failed run."""


class Executor(ABC):
    """Where runs happen: `submit`, `as_completed`, `cancel`, `close` (also a context manager)."""

    @abstractmethod
    def submit(self, spec: RunSpec) -> RunHandle: ...

    @abstractmethod
    def as_completed(self, handles: Iterable[RunHandle], timeout: float | None = None) -> Iterator[RunHandle]: ...

    @abstractmethod
    def cancel(self, handle: RunHandle) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def map(self, specs: Iterable[RunSpec]) -> list[RunResult]:
        """Run every spec and return the results in submission order."""
        handles = [self.submit(s) for s in specs]
        return [h.result() for h in handles]

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalHandle(RunHandle):
    def __init__(self, spec: RunSpec, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self.cancel_event = threading.Event()
        self.future: Future[RunResult] | None = None

    def done(self) -> bool:
        assert self.future is not None
        return self.future.done()

    def result(self, timeout: float | None = None) -> RunResult:
        assert self.future is not None
        try:
            return self.future.result(timeout)
        except CancelledError:
            return killed_result(self.spec, self.run_id, "cancelled before it started")
        except FutureTimeout:
            raise TimeoutError(f"run {self.run_id} still running after {timeout} s") from None

    def __repr__(self) -> str:
        return f"<LocalHandle {self.run_id} done={self.done()}>"


class LocalExecutor(Executor):
    """Runs at most `max_workers` sandboxed runs at once on this machine."""

    def __init__(self, max_workers: int = 2) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise SandboxError(f"max_workers={max_workers!r}: expected an integer >= 1")
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tracekit-run")
        self._handles: list[LocalHandle] = []
        self._closed = False

    def submit(self, spec: RunSpec) -> LocalHandle:
        from ._runner import new_run_id, run

        if self._closed:
            raise SandboxError("this LocalExecutor is closed; create a new one")
        spec = prepare_spec(spec)
        handle = LocalHandle(spec, new_run_id())
        handle.future = self._pool.submit(run, spec, cancel=handle.cancel_event, run_id=handle.run_id)
        self._handles.append(handle)
        return handle

    def as_completed(self, handles: Iterable[RunHandle], timeout: float | None = None) -> Iterator[RunHandle]:
        by_future: dict[Future[RunResult], LocalHandle] = {}
        for h in handles:
            if not isinstance(h, LocalHandle) or h.future is None:
                raise SandboxError(f"{h!r} was not submitted to a LocalExecutor")
            by_future[h.future] = h
        for fut in futures_as_completed(by_future, timeout=timeout):
            yield by_future[fut]

    def cancel(self, handle: RunHandle) -> None:
        """Stop a run: a queued one never starts, a running one gets SIGTERM then SIGKILL after its grace."""
        if not isinstance(handle, LocalHandle) or handle.future is None:
            raise SandboxError(f"{handle!r} was not submitted to a LocalExecutor")
        handle.cancel_event.set()
        handle.future.cancel()

    def close(self, cancel: bool = True) -> None:
        """Stop accepting runs; with `cancel`, stop the running and queued ones; wait for the threads."""
        self._closed = True
        if cancel:
            for h in self._handles:
                self.cancel(h)
        self._pool.shutdown(wait=True, cancel_futures=cancel)
