"""The SQL worker: a process that answers clients' SQL over the store and cannot write anywhere.

    python -m tracekit.collector._sqlworker '{"home": "/data/traces", "limits": {...}}'

Started by `_sqlpool.SqlService`, one per concurrent query. Before it imports DuckDB it takes away
its own rights, so that nothing a statement does can reach past them:

- Landlock (`tracekit/_util/landlock.py`): read-only everywhere (no file or folder created, written,
  truncated, renamed or deleted, no program executed), no TCP, no signals or abstract sockets
  outside itself. Binds root too. Without Landlock it says so in its hello (the collector
  reports it in /health and the serve banner) and DuckDB's settings are the file fence left.
- rlimits: no file may grow past 0 bytes (RLIMIT_FSIZE, SIGXFSZ ignored), no core dumps, and a
  data-segment cap above DuckDB's memory_limit (a query that escapes DuckDB's accounting fails with
  an allocation error instead of taking the machine's memory).
- it dies with the collector (PR_SET_PDEATHSIG), and its environment holds no token.

Requests are JSON lines on stdin; answers go back as frames (see `_frames`) on the descriptor
that was stdout (stdout itself is pointed at stderr, so a stray print cannot corrupt a frame).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import signal
import sys
from typing import Any

from . import _frames as fr

PR_SET_PDEATHSIG = 1
_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def memory_bytes(limit: str) -> int:
    """'1GB' / '512MiB' (DuckDB's notation) in bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", limit.upper())
    if not m:
        raise ValueError(f"memory limit {limit!r}: use a size like '1GB' or '512MiB'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def data_cap(memory_limit: str) -> int:
    """The kernel's cap on the worker's data segment: DuckDB's limit, half again, and 768 MiB for
    the interpreter, Arrow and the JSON encoding of one slice (about 250 MiB of that is imports)."""
    limit = memory_bytes(memory_limit)
    return limit + limit // 2 + (768 << 20)


def restrict(memory_limit: str) -> int:
    """Everything the module docstring lists, in this process; returns the Landlock ABI applied (0: none)."""
    from .._util import landlock as _landlock

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the collector died before the line above: nobody to answer
        os._exit(0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap = data_cap(memory_limit)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    return _landlock.restrict_self(ro=["/"], execute=False, deny_tcp=True, scope=True)


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1])
    out = os.dup(1)
    os.dup2(2, 1)  # print() goes to stderr; frames go to `out`
    try:
        abi = restrict(cfg["limits"]["memory_limit"])
    except OSError as exc:
        fr.write_frame(out, fr.HELLO, fr.json_bytes({"error": f"could not restrict the SQL worker: {exc}"}))
        return 1
    from ._sql import Engine, SqlLimits  # DuckDB and Arrow load only now, behind the fences

    try:
        engine = Engine(cfg["home"], SqlLimits(**cfg["limits"]))
    except Exception as exc:
        fr.write_frame(out, fr.HELLO, fr.json_bytes({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    fr.write_frame(out, fr.HELLO, fr.json_bytes({"pid": os.getpid(), "landlock": abi, "rss_kb": rss_kb()}))
    for line in sys.stdin.buffer:
        request = json.loads(line)
        answer(engine, request, out)
    return 0


def answer(engine: Any, req: dict[str, Any], out: int) -> None:
    """Run one request and write its frames: ERROR, or START, DATA..., END."""
    from .._errors import QueryError

    try:
        run = engine.open(req["sql"], fr.decode_params(req.get("params")), int(req["cap"]), float(req["timeout"]), validate=bool(req["validate"]))
    except QueryError as exc:
        fr.write_frame(out, fr.ERROR, fr.json_bytes(_problem(exc)))
        return
    sink = _DataSink(out)
    error = None
    try:
        fr.write_frame(out, fr.START, fr.json_bytes({"columns": [{"name": f.name, "type": str(f.type)} for f in run.schema]}))
        write = _write_arrow if req.get("format") == "arrow" else _write_json
        error = write(run, sink)
    finally:
        run.close()
    fr.write_frame(out, fr.END, fr.json_bytes({
        "rows": run.rows, "truncated": run.truncated or error is not None, "elapsed_ms": round(run.elapsed_ms, 3),
        "bytes": sink.total, "error": error, "rss_kb": rss_kb(),
    }))


def _write_json(run: Any, sink: "_DataSink") -> dict[str, str] | None:
    """The answer document, row by row: {"columns", "rows", "row_count", "truncated", "elapsed_ms"}
    (plus "error" and "message" when the query failed after its first rows)."""
    from .._errors import QueryError

    columns = [{"name": f.name, "type": str(f.type)} for f in run.schema]
    sink.write('{"columns": ' + fr.json_text(columns) + ', "rows": [')
    first, error = True, None
    try:
        for batch in run:
            for row in batch.to_pylist():
                sink.write(("" if first else ", ") + fr.json_text(row))
                first = False
    except QueryError as exc:
        error = _problem(exc)
    tail = {"row_count": run.rows, "truncated": run.truncated or error is not None, "elapsed_ms": round(run.elapsed_ms, 3)}
    if error:
        tail.update(error=error["code"], message=error["message"])
    sink.write("], " + fr.json_text(tail)[1:])
    sink.flush()
    return error


def _write_arrow(run: Any, sink: "_DataSink") -> dict[str, str] | None:
    """An Arrow IPC stream; its last batch (0 rows) carries tracekit.rows / truncated / error metadata."""
    import pyarrow as pa

    from .._errors import QueryError

    error = None
    # pyarrow wraps any object with write/flush in a PythonFile; its stubs only name IOBase
    with pa.ipc.new_stream(sink, run.schema) as writer:  # type: ignore[arg-type]
        try:
            for batch in run:
                writer.write_batch(batch)
        except QueryError as exc:
            error = _problem(exc)
        meta = {"tracekit.rows": str(run.rows), "tracekit.truncated": str(run.truncated or error is not None).lower()}
        if error:
            meta.update({"tracekit.error": error["code"], "tracekit.message": error["message"]})
        writer.write_batch(pa.RecordBatch.from_pylist([], schema=run.schema), custom_metadata={k.encode(): v.encode() for k, v in meta.items()})
    sink.flush()
    return error


def _problem(exc: Exception) -> dict[str, str]:
    from ._sql import SqlRefused, SqlTimeout

    code = "sql_refused" if isinstance(exc, SqlRefused) else "sql_timeout" if isinstance(exc, SqlTimeout) else "sql_error"
    return {"code": code, "message": str(exc)[:200_000]}


class _DataSink:
    """A write-only file that sends what it is given as DATA frames of up to MAX_DATA bytes."""

    closed = False

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.total = 0

    def write(self, data: Any) -> int:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self.buf += raw
        while len(self.buf) >= fr.MAX_DATA:
            self._send(fr.MAX_DATA)
        return len(raw)

    def flush(self) -> None:
        if self.buf:
            self._send(len(self.buf))

    def _send(self, n: int) -> None:
        fr.write_frame(self.fd, fr.DATA, bytes(self.buf[:n]))
        del self.buf[:n]
        self.total += n

    def close(self) -> None:
        self.flush()

    def writable(self) -> bool:
        return True


def rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
