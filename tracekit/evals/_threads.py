"""Worker threads for sync solvers: reused between cases, never shared by two at once.

    value = await in_thread(solver, sample.input)    # runs in the caller's context (current span too)
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any


class _Workers:
    """Daemon threads for sync solvers. A job never waits for a busy thread: when none is idle a new
    one starts, so a solver stuck past its time limit holds only its own thread."""

    MAX_IDLE = 64

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            spawn = self.idle == 0
            if not spawn:
                self.idle -= 1
        self.jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="tracekit-eval-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            self.jobs.get()()
            with self.lock:
                if self.idle >= self.MAX_IDLE:
                    return
                self.idle += 1


_workers = _Workers()


def in_thread(fn: Callable[..., Any], arg: Any) -> "asyncio.Future[Any]":
    """Run a sync solver on a worker thread, in the caller's context (its current span included)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        fut.set_result(value) if ok else fut.set_exception(value)

    def job() -> None:
        try:
            outcome: tuple[bool, Any] = (True, ctx.run(fn, arg))
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile (a case abandoned after its time limit)
            pass

    _workers.submit(job)
    return fut
