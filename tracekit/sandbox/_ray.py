"""`RayExecutor`: the same sandbox inside Ray tasks, so runs spread over a Ray cluster (extra `ray`).

    from tracekit.sandbox import RayExecutor, RunSpec
    with RayExecutor(address="auto") as ex:          # or None: start / join a local Ray instance
        handles = [ex.submit(spec) for spec in specs]
        for h in ex.as_completed(handles):
            print(h.result().status)

Ray isolates nothing itself: each task calls `tracekit.sandbox.run()` on its worker, which
enforces the deadline and limits. `cancel()` stops a run gracefully (SIGTERM, grace, SIGKILL)
through a cancel flag the task polls; a task that does not answer is force-killed after the
grace, and a worker that dies takes its sandbox with it (the sandbox dies with its parent).
Paths in the spec (workspace, run_dir, trace_home) must exist on the worker: the same machine or a
shared file system; `ship_workspace=True` sends the workspace folder as bytes instead.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._errors import SandboxError
from ._executors import Executor, RunHandle, killed_result, prepare_spec
from ._spec import RunResult, RunSpec


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise SandboxError("RayExecutor needs Ray: pip install 'tracekit-loop[ray]'") from exc
    return ray


def _pack(folder: Path, exclude: tuple[str, ...]) -> bytes:
    import fnmatch

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".", filter=lambda ti: None if any(fnmatch.fnmatch(Path(ti.name).name, p) for p in exclude) else ti)
    return buf.getvalue()


def _task(spec_dict: dict[str, Any], run_id: str, workspace_tar: bytes | None, flag_name: str) -> dict[str, Any]:
    """Runs on the Ray worker: unpack the workspace if shipped, run the sandbox, poll the cancel flag."""
    from ._runner import run

    ray = _ray()
    spec = RunSpec.from_dict(spec_dict)
    tmp = None
    if workspace_tar is not None:
        tmp = tempfile.TemporaryDirectory(prefix="tracekit-ray-ws-")
        with tarfile.open(fileobj=io.BytesIO(workspace_tar), mode="r:gz") as tar:
            tar.extractall(tmp.name, filter="data")
        spec = replace(spec, workspace=Path(tmp.name))
    cancel = threading.Event()
    flags = ray.get_actor(flag_name)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            try:
                if ray.get(flags.is_set.remote(run_id)):
                    cancel.set()
                    return
            except Exception:  # the driver went away: the run ends on its own deadline
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        return run(spec, cancel=cancel, run_id=run_id).to_dict()
    finally:
        stop.set()
        if tmp is not None:
            tmp.cleanup()


class _Flags:
    """A tiny Ray actor holding cancel requests (run ids)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def set(self, run_id: str) -> None:
        self.ids.add(run_id)

    def is_set(self, run_id: str) -> bool:
        return run_id in self.ids


class RayHandle(RunHandle):
    def __init__(self, spec: RunSpec, run_id: str, payload: tuple[Any, ...]) -> None:
        self.spec, self.run_id, self.payload = spec, run_id, payload
        self.ref: Any = None
        self.dispatched = threading.Event()
        self._result: RunResult | None = None

    def done(self) -> bool:
        if self._result is not None:
            return True
        if not self.dispatched.is_set():
            return False
        ready, _ = _ray().wait([self.ref], timeout=0)
        return bool(ready)

    def result(self, timeout: float | None = None) -> RunResult:
        end = None if timeout is None else time.monotonic() + timeout
        if not self.dispatched.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still queued after {timeout} s")
        if self._result is None:
            ray = _ray()
            left = None if end is None else max(end - time.monotonic(), 0)
            try:
                self._result = RunResult.from_dict(ray.get(self.ref, timeout=left))
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"run {self.run_id} still running after {timeout} s") from None
            except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError) as exc:
                self._result = killed_result(self.spec, self.run_id, f"the Ray task was stopped: {type(exc).__name__}")
            except ray.exceptions.RayError as exc:
                self._result = killed_result(self.spec, self.run_id, f"the Ray task failed: {exc}")
        return self._result

    def __repr__(self) -> str:
        return f"<RayHandle {self.run_id}>"


class RayExecutor(Executor):
    """Submit runs as Ray tasks (`num_cpus` / `num_gpus` / `resources` per run), at most `max_workers` at once."""

    def __init__(self, address: str | None = None, *, max_workers: int | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, resources: dict[str, float] | None = None, ship_workspace: bool = False,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise SandboxError(f"max_workers={max_workers!r}: expected an integer >= 1 or None (Ray's resources decide)")
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
        self.max_workers = max_workers
        self.ship_workspace = ship_workspace
        self._remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or {}, max_retries=0)(_task)
        self._flag_name = f"tracekit-sandbox-flags-{id(self):x}-{time.monotonic_ns():x}"
        self._flags = ray.remote(num_cpus=0)(_Flags).options(name=self._flag_name).remote()
        self._handles: list[RayHandle] = []
        self._queue: deque[RayHandle] = deque()
        self._inflight: list[RayHandle] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch, name="tracekit-ray-dispatch", daemon=True)
        self._thread.start()

    def _dispatch(self) -> None:
        ray = _ray()
        while True:
            with self._cv:
                if self._closed and not self._queue:
                    return
                while self._queue and (self.max_workers is None or len(self._inflight) < self.max_workers):
                    h = self._queue.popleft()
                    h.ref = self._remote.remote(*h.payload)
                    h.payload = ()
                    h.dispatched.set()
                    self._inflight.append(h)
                inflight = list(self._inflight)
                if not inflight:
                    self._cv.wait(0.2)
                    continue
            ready, _ = ray.wait([h.ref for h in inflight], num_returns=1, timeout=0.2)
            if ready:
                with self._cv:
                    self._inflight = [h for h in self._inflight if h.ref not in ready]

    def submit(self, spec: RunSpec) -> RayHandle:
        from ._runner import new_run_id

        if self._closed:
            raise SandboxError("this RayExecutor is closed; create a new one")
        spec = prepare_spec(spec)
        run_id = new_run_id()
        tar = None
        if self.ship_workspace and spec.workspace is not None:
            tar = _pack(Path(spec.workspace), tuple(spec.copy_exclude))
        handle = RayHandle(spec, run_id, (spec.to_dict(), run_id, tar, self._flag_name))
        with self._cv:
            self._queue.append(handle)
            self._handles.append(handle)
            self._cv.notify()
        return handle

    def as_completed(self, handles: Iterable[RunHandle], timeout: float | None = None) -> Iterator[RunHandle]:
        pending = []
        for h in handles:
            if not isinstance(h, RayHandle):
                raise SandboxError(f"{h!r} was not submitted to a RayExecutor")
            pending.append(h)
        end = None if timeout is None else time.monotonic() + timeout
        while pending:
            finished = [h for h in pending if h.done()]
            for h in finished:
                pending.remove(h)
                yield h
            if not finished:
                if end is not None and time.monotonic() > end:
                    raise TimeoutError(f"{len(pending)} run(s) still running after {timeout} s")
                time.sleep(0.05)

    def cancel(self, handle: RunHandle) -> None:
        """A queued run never starts; a running one is stopped gracefully, force-killed if it outlives its grace."""
        if not isinstance(handle, RayHandle):
            raise SandboxError(f"{handle!r} was not submitted to a RayExecutor")
        with self._cv:
            if handle in self._queue:
                self._queue.remove(handle)
                handle._result = killed_result(handle.spec, handle.run_id, "cancelled before it started")
                handle.dispatched.set()
                return
        if not handle.dispatched.is_set() or handle.done():
            return
        ray = _ray()
        ray.get(self._flags.set.remote(handle.run_id))
        ready, _ = ray.wait([handle.ref], timeout=handle.spec.grace_s + 10)
        if not ready:
            ray.cancel(handle.ref, force=True)

    def close(self) -> None:
        """Cancel queued and running runs, stop the dispatcher."""
        for h in list(self._handles):
            if not h.done():
                self.cancel(h)
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5)
        try:
            _ray().kill(self._flags)
        except Exception:
            pass
