"""The SQL console: a client's read-only query, its rows as a table, and CSV or Parquet downloads.

    GET /ui/sql?sql=SELECT+...&limit=200       the page, with up to `limit` rows (at most SHOW_ROWS)
    GET /ui/sql.csv?sql=...  /ui/sql.parquet?sql=...   the whole answer (the server's row cap applies)

The statement goes through the same `SqlService.answer` as `POST /api/sql`: validated as one
SELECT, run in a read-only worker under the server's time, row and memory limits. Downloads stream:
the worker's Arrow batches are re-encoded batch by batch (CSV text, or Parquet row groups), so the
server holds one batch at a time. Queries are GET parameters, so a result is a link to share; the
pages change nothing, and the session cookie is SameSite=Strict, so no other site can send them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from .._errors import QueryError
from ..collector._sql import SqlBusy, SqlWorkerFailed
from ..collector._sqlpool import Answer
from ._render import cell, page

CELL = 2000  # characters of one cell on the page
from ._source import Reader
from ._traces import BadInput

SHOW_ROWS = 1000
SHOW_TEXT = 2_000_000  # characters of cells one console page shows (then the rows stop; downloads have them all)
MAX_SQL = 16_000  # characters (a URL carries the statement)
EXAMPLES = [
    "SELECT name, kind, count(*) AS n, round(avg(duration_ms), 1) AS avg_ms FROM spans GROUP BY ALL ORDER BY n DESC LIMIT 20",
    "SELECT model, count(*) AS calls, sum(total_tokens) AS tokens, sum(cost_usd) AS cost FROM llm_calls GROUP BY model",
    "SELECT experiment_id, status, metric, reason FROM experiments ORDER BY finished_at DESC LIMIT 20",
    "SELECT run_id, case_id, passed, score, explanation FROM eval_results WHERE NOT passed LIMIT 50",
]


class _Chunks(io.RawIOBase):
    """A readable file over an Answer's chunks (Arrow IPC stream bytes), for pyarrow's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class _Sink(io.RawIOBase):
    """A write-only file that hands back what was written since the last `take()` (Parquet's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _statement(request: Request) -> str:
    sql = (request.query_params.get("sql") or "").strip()
    if len(sql) > MAX_SQL:
        raise BadInput(f"the statement is {len(sql)} characters; the console takes at most {MAX_SQL} (use POST /api/sql for longer ones)")
    return sql


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit") or "200"
    if not raw.isdigit() or not 1 <= int(raw) <= SHOW_ROWS:
        raise BadInput(f"limit {raw[:20]!r}: use a number of rows from 1 to {SHOW_ROWS}")
    return int(raw)


def _batches(answer: Answer) -> Iterator[Any]:
    """The answer's schema first, then its record batches (an error after rows raises at the end)."""
    import pyarrow as pa

    reader = pa.ipc.open_stream(io.BufferedReader(_Chunks(answer.chunks()), buffer_size=1 << 16))
    yield reader.schema
    yield from reader
    if answer.end.get("error"):
        raise QueryError(str(answer.end["error"].get("message")))


def _csv(answer: Answer) -> Iterator[bytes]:
    import pyarrow.csv as pcsv

    try:
        batches = _batches(answer)
        schema = next(batches)
        yield (",".join('"' + name.replace('"', '""') + '"' for name in schema.names) + "\n").encode()
        for batch in batches:
            out = io.BytesIO()
            pcsv.write_csv(_printable(batch), out, pcsv.WriteOptions(include_header=False))
            yield out.getvalue()
    finally:
        answer.close(complete=bool(answer.end))


def _parquet(answer: Answer) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Sink()
    try:
        batches = _batches(answer)
        writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), next(batches), compression="zstd")
        for batch in batches:
            writer.write_batch(batch)
            yield sink.take()
        writer.close()  # the footer: with no rows, still a file with the answer's columns
        yield sink.take()
    finally:
        answer.close(complete=bool(answer.end))


def _printable(batch: Any) -> Any:
    """CSV has no nested types: lists and structs (span events) become their JSON text."""
    import pyarrow as pa

    from ..collector._frames import json_text

    cols = []
    for col in batch.columns:
        if pa.types.is_nested(col.type):
            cols.append(pa.array([None if v is None else json_text(v) for v in col.to_pylist()], pa.string()))
        else:
            cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def routes(app: FastAPI, reader: Callable[[], Reader]) -> None:
    @app.get("/sql")
    def console(request: Request) -> HTMLResponse:
        sql, limit = _statement(request), _limit(request)
        context: dict[str, Any] = {"sql": sql, "limit": limit, "examples": EXAMPLES, "columns": [], "rows": [], "error": "",
                                   "truncated": False, "elapsed_ms": None, "show_rows": SHOW_ROWS}
        status = 200
        if sql:
            try:
                result = reader().sql.run(sql, limit=limit)
            except (SqlBusy, SqlWorkerFailed):
                raise
            except QueryError as exc:
                context["error"], status = str(exc), 400
            else:
                table = result.table
                rows: list[list[Any]] = []
                left = SHOW_TEXT
                for r in table.to_pylist():
                    left -= sum(len(cell(v, CELL)) for v in r.values())
                    if left < 0 and rows:
                        break
                    rows.append(list(r.values()))
                context.update(columns=table.column_names, rows=rows, truncated=result.truncated or len(rows) < table.num_rows,
                               elapsed_ms=result.elapsed_ms)
        return page(request, "sql.html", status, **context)

    def download(request: Request, fmt: str) -> Response:
        sql = _statement(request)
        if not sql:
            raise BadInput("no statement: add ?sql=SELECT ...")
        r = reader()
        answer = r.answer(sql, limit=r.sql.limits.max_rows, fmt="arrow")  # a statement that fails at once raises here: an error page
        body = _csv(answer) if fmt == "csv" else _parquet(answer)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
        return StreamingResponse(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="tracekit-query.{fmt}"'})

    @app.get("/sql.csv")
    def sql_csv(request: Request) -> Response:
        return download(request, "csv")

    @app.get("/sql.parquet")
    def sql_parquet(request: Request) -> Response:
        return download(request, "parquet")
