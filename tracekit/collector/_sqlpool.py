"""The collector's side of SQL: a bounded pool of worker processes, and answers streamed out of them.

    service = SqlService(home, SqlLimits(workers=2))
    answer = service.answer("SELECT * FROM spans", limit=1000, fmt="json")   # waits for a free worker
    for chunk in answer.chunks(): ...          # the answer's bytes, as the worker encoded them
    service.run("SELECT count(*) FROM spans").table            # collected, for small answers
    service.run_trusted("SELECT ... WHERE trace_id = ?", [tid])  # tracekit's own parameterised SQL

Why processes: the client's SQL runs where the kernel forbids every write (see `_sqlworker`), and a
big answer's memory lives and dies with its worker: the collector only relays frames of at most
1 MiB, and a worker that sent an answer over `recycle_mb` (or whose memory grew by four times that)
is replaced once its answer is done, which gives the memory back to the OS. At most `workers` queries run at once; the next waits up to
`queue_timeout` for a worker (then SqlBusy, a 503). An answer takes at most `timeout` seconds:
DuckDB is interrupted at the limit (a clean error, or `truncated` with an error after rows), and a
worker that overruns by GRACE seconds, or whose answer the client abandoned, is killed.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import QueryError
from . import _frames as fr
from ._sql import SqlBusy, SqlLimits, SqlRefused, SqlTimeout, SqlWorkerFailed

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("tracekit.collector")
GRACE = 5.0  # seconds past the time limit before a silent worker is killed
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding this tracekit package
START_TIMEOUT = 60.0
_ERRORS: dict[str, type[QueryError]] = {"sql_refused": SqlRefused, "sql_timeout": SqlTimeout}


def problem_error(problem: dict[str, Any]) -> QueryError:
    """The exception for a worker's {"code", "message"} problem."""
    return _ERRORS.get(str(problem.get("code")), QueryError)(str(problem.get("message")))


@dataclass
class SqlResult:
    table: "pa.Table"
    truncated: bool
    elapsed_ms: float


class _Worker:
    def __init__(self, home: Path, limits: SqlLimits) -> None:
        cfg = json.dumps({"home": str(home), "limits": asdict(limits)})
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": "/nonexistent"}  # no tokens
        # -I: no environment or user site can change what runs; the same tracekit as this process, by path
        boot = f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); from tracekit.collector._sqlworker import main; sys.exit(main(sys.argv))"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, cfg],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/", start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.reader = fr.FrameReader(self.proc.stdout.fileno())
        try:
            kind, payload = self.reader.read(time.monotonic() + START_TIMEOUT)
            hello = json.loads(payload) if kind == fr.HELLO else {"error": "no hello"}
        except (fr.WorkerGone, ValueError) as exc:
            hello = {"error": str(exc)}
        if hello.get("error"):
            self.kill()
            raise QueryError(f"the SQL worker could not start: {hello['error']}")
        self.pid = self.proc.pid
        self.landlock = int(hello.get("landlock", 0))
        self.base_rss_kb = int(hello.get("rss_kb", 0))
        self.sent = 0

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise fr.WorkerGone(f"the SQL worker is gone ({exc})") from None

    def rss_kb(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.proc.wait()


class SqlService:
    """At most `limits.workers` worker processes over one store; thread-safe."""

    def __init__(self, home: Path, limits: SqlLimits | None = None) -> None:
        self.home = Path(home).resolve()
        self.limits = limits or SqlLimits()
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0  # workers alive or being started
        self._closed = False
        self.landlock = 0
        self.workers_started = 0
        self.workers_recycled = 0
        # Workers are started from this one long-lived thread: a worker dies with the *thread* that
        # started it (PR_SET_PDEATHSIG), and a request's thread (a server's thread pool) may exit.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracekit-sql-spawn")
        self._release(self._spawn())  # one warm worker; also proves the views can be built

    # -- the pool ---------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        with self._cond:
            self._count += 1
        try:
            worker = self._spawner.submit(_Worker, self.home, self.limits).result()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        self.landlock = worker.landlock
        self.workers_started += 1
        return worker

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + self.limits.queue_timeout
        with self._cond:
            while not self._idle and self._count >= self.limits.workers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise SqlBusy(
                        f"all {self.limits.workers} SQL workers are busy (waited {self.limits.queue_timeout:g} s); "
                        "retry after the Retry-After delay, or raise TRACEKIT_SQL_WORKERS"
                    )
                self._cond.wait(left)
            while self._idle:
                worker = self._idle.pop()
                if worker.proc.poll() is None:
                    return worker
                self._count -= 1  # died while idle (the kernel's OOM killer, a signal): start another
                worker.kill()
        return self._spawn()

    def _release(self, worker: _Worker, *, healthy: bool = True, sent: int = 0) -> None:
        """Back to the pool; killed if broken, and replaced (memory back to the OS) after an answer
        over `recycle_mb` or once it grew by four times that (DuckDB's caches)."""
        grown = (worker.rss_kb() - worker.base_rss_kb) * 1024 if healthy else 0
        recycle = healthy and (sent > self.limits.recycle_mb << 20 or grown > 4 * self.limits.recycle_mb << 20)
        if not healthy or recycle or self._closed:
            if not healthy and not self._closed:
                log.warning("tracekit collector: SQL worker %d stopped (its answer did not finish); a new one starts on demand", worker.pid)
            worker.kill()
            self.workers_recycled += recycle
            with self._cond:
                self._count -= 1
                self._cond.notify()
            return
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def status(self) -> dict[str, Any]:
        with self._cond:
            busy = self._count - len(self._idle)
        return {"landlock_abi": self.landlock, "workers": self._count, "busy": busy,
                "workers_started": self.workers_started, "workers_recycled": self.workers_recycled}

    # -- queries ----------------------------------------------------------------------------

    def answer(self, sql: str, *, limit: int | None = None, timeout: float | None = None, fmt: str = "json",
               params: list[Any] | None = None, validate: bool = True) -> "Answer":
        """Start `sql` on a worker; raises the statement's error (SqlRefused, SqlTimeout, QueryError)
        if it failed before its first row, else an Answer to stream."""
        cap = min(limit if limit is not None else self.limits.default_rows, self.limits.max_rows)
        if cap < 0:
            raise QueryError(f"limit {limit}: use a number of rows >= 0")
        timeout = min(timeout, self.limits.timeout) if timeout else self.limits.timeout
        worker = self._acquire()
        answer = Answer(self, worker, time.monotonic() + timeout + GRACE)
        try:
            worker.send({"sql": sql, "params": fr.encode_params(params), "cap": cap, "timeout": timeout,
                         "validate": validate, "format": fmt})
            kind, payload = answer.frame()
            try:
                message = json.loads(payload)
                if kind == fr.START:
                    answer.columns = list(message["columns"])
            except (ValueError, KeyError, TypeError):
                raise fr.WorkerGone(f"the SQL worker sent a malformed {kind!r} frame") from None
            if kind == fr.ERROR:
                answer.close(complete=True)
                raise problem_error(message)
            if kind != fr.START:
                raise fr.WorkerGone(f"the SQL worker sent {kind!r} before its answer")
            return answer
        except fr.WorkerGone as exc:
            answer.close(complete=False)
            raise SqlWorkerFailed(f"{exc}; run the query again (a query that needs more memory than "
                                  f"{self.limits.memory_limit} stops its worker: narrow it)") from None
        except BaseException:
            answer.close(complete=False)
            raise

    def run(self, sql: str, *, limit: int | None = None, timeout: float | None = None,
            params: list[Any] | None = None, validate: bool = True) -> SqlResult:
        """The whole answer as one Arrow table (for small answers: it is held in memory)."""
        import pyarrow as pa

        answer = self.answer(sql, limit=limit, timeout=timeout, fmt="arrow", params=params, validate=validate)
        body = b"".join(answer.chunks())
        if answer.end.get("error"):
            raise problem_error(answer.end["error"])
        table = pa.ipc.open_stream(body).read_all()
        table.validate(full=True)
        return SqlResult(table, answer.end["truncated"], answer.end["elapsed_ms"])

    def run_trusted(self, sql: str, params: list[Any] | None = None, *, limit: int = 1_000_000) -> "pa.Table":
        """tracekit's own parameterised SQL (the /api/traces endpoints), unvalidated, same limits."""
        return self.run(sql, limit=limit, params=params, validate=False).table

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.kill()
        self._spawner.shutdown(wait=False)


class Answer:
    """One streamed answer: `chunks()` yields its bytes; `end` has rows, truncated, error when done."""

    def __init__(self, service: SqlService, worker: _Worker, deadline: float) -> None:
        self.service, self.worker, self.deadline = service, worker, deadline
        self.columns: list[dict[str, str]] = []
        self.end: dict[str, Any] = {}
        self.sent = 0  # bytes relayed, counted here (the worker's own count is not trusted)
        self._done = False

    def frame(self) -> tuple[bytes, bytes]:
        return self.worker.reader.read(self.deadline)

    def next_chunk(self, wait: float) -> bytes | None:
        """The next DATA payload; b"" if none came within `wait` seconds; None at the end."""
        if self._done:
            return None
        try:
            frame = self.worker.reader.poll(min(self.deadline, time.monotonic() + wait))
            if frame is None:
                if time.monotonic() >= self.deadline:
                    raise fr.WorkerGone(f"the SQL worker overran the time limit by {GRACE:g} s and was stopped")
                return b""
            kind, payload = frame
            if kind == fr.DATA:
                self.sent += len(payload)
                return payload
            if kind != fr.END:
                raise fr.WorkerGone(f"the SQL worker sent {kind!r} inside an answer")
            end = json.loads(payload)
            error = end.get("error")
            self.end = {"rows": int(end["rows"]), "truncated": bool(end["truncated"]), "elapsed_ms": float(end["elapsed_ms"]),
                        "error": {"code": str(error.get("code")), "message": str(error.get("message"))} if isinstance(error, dict) else None}
        except (fr.WorkerGone, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.close(complete=False)
            raise SqlWorkerFailed(str(exc)) from None
        self.close(complete=True)
        return None

    def chunks(self, wait: float = 1.0) -> Iterator[bytes]:
        try:
            while (chunk := self.next_chunk(wait)) is not None:
                if chunk:
                    yield chunk
        finally:
            self.close(complete=bool(self.end))

    def close(self, *, complete: bool) -> None:
        """Give the worker back (or kill it, if the answer did not finish); idempotent."""
        if self._done:
            return
        self._done = True
        self.service._release(self.worker, healthy=complete, sent=self.sent)
