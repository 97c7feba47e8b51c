"""The collector's read API: POST /api/sql, GET /api/traces, GET /api/traces/{trace_id}.

    curl -s localhost:4318/api/sql -H 'Authorization: Bearer $TOKEN' \\
         -d '{"sql": "SELECT name, count(*) AS n FROM spans GROUP BY name", "limit": 100}'
    curl -s localhost:4318/api/sql -H 'Accept: application/vnd.apache.arrow.stream' -d '{"sql": "..."}'
    curl -s 'localhost:4318/api/traces?project=demo&status=error&limit=20'

Every read first folds acknowledged spans into Parquet (so a 200 from /v1/traces is visible to
the next query), then runs in a SQL worker process (`_sqlpool`, `_sqlworker`). Answers stream:
the worker encodes rows batch by batch and the collector relays frames of at most 1 MiB, so no
process holds a whole big answer. An answer that is complete within its first PREFETCH bytes is
sent as one response with exact headers (and a statement that failed is a 4xx); a longer one
streams (chunked), and if it fails after its first rows the JSON document ends with
`"truncated": true, "error", "message"`, the Arrow stream's last batch carries `tracekit.error`
and the connection is cut before the end, so no client mistakes it for a whole answer.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field

from .._errors import QueryError
from .._util.jsonutil import loads_limited
from ._auth import READ
from ._frames import json_text
from ._sqlpool import Answer, SqlService, problem_error
from ._state import CollectorState, HTTPProblem, check_token, state_of

log = logging.getLogger("tracekit.collector")

ARROW_STREAM = "application/vnd.apache.arrow.stream"
SYNC_TIMEOUT = 10.0
PREFETCH = 1 << 20  # answers complete within this many bytes go out whole, with exact headers
TRACE_COLUMNS = (
    "trace_id, root_span_id, name, kind, project, experiment_id, service_name, start_time, end_time, "
    "duration_ms, span_count, error_count, status"
)

bearer = HTTPBearer(auto_error=False, description="A token with the 'read' scope (when tokens are configured).")
router = APIRouter(prefix="/api", tags=["read"], dependencies=[Security(bearer)], strict_content_type=False)  # curl -d works


class SqlRequest(BaseModel):
    sql: str = Field(description="One read-only SELECT over the store's tables and views.", examples=["SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY n DESC"])
    limit: int | None = Field(None, ge=0, description="Most rows to return (capped by the server's maximum).")
    format: Literal["json", "arrow"] | None = Field(None, description="'arrow' answers an Arrow IPC stream (as does Accept: application/vnd.apache.arrow.stream).")
    timeout: float | None = Field(None, gt=0, description="Seconds before the query is stopped (capped by the server's limit).")


def _reader(request: Request, authorization: str | None) -> tuple[CollectorState, SqlService]:
    state = state_of(request)
    check_token(state.config.tokens, authorization, READ)  # the guard checked it before the body; this documents it
    service = state.sql_service()
    if service is None:
        raise HTTPProblem(503, "sql_unavailable", f"SQL is unavailable: {state.sql_error}", {"Retry-After": "5"})
    state.ingestor.sync(SYNC_TIMEOUT)
    return state, service


@router.post("/sql", summary="Read-only SQL over the store (JSON rows or Arrow IPC)")
def run_sql(
    body: SqlRequest,
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    state, sql = _reader(request, authorization)
    fmt = "arrow" if body.format == "arrow" or (body.format is None and accept and ARROW_STREAM in accept) else "json"
    answer = sql.answer(body.sql, limit=body.limit, timeout=body.timeout, fmt=fmt)
    state.requests[200] += 1
    return answer_response(answer, fmt)


@router.get("/traces", summary="Traces, newest first, with filters and cursor paging")
def list_traces(
    request: Request,
    project: str | None = None,
    experiment_id: str | None = None,
    name: str | None = Query(None, description="Root span name."),
    kind: str | None = Query(None, description="Root span kind (agent, llm, tool, ...)."),
    status: Literal["ok", "error"] | None = None,
    since: dt.datetime | None = Query(None, description="Traces starting at or after this time (ISO 8601, UTC if no zone)."),
    until: dt.datetime | None = Query(None, description="Traces starting before this time."),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, description="next_cursor from the previous page."),
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    state, sql = _reader(request, authorization)
    where: list[str] = []
    params: list[object] = []
    for col, value in (("project", project), ("experiment_id", experiment_id), ("name", name), ("kind", kind), ("status", status)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    if since is not None:
        where.append("start_time >= ?")
        params.append(_utc(since))
    if until is not None:
        where.append("start_time < ?")
        params.append(_utc(until))
    if cursor:
        at, last_id = _decode_cursor(cursor)
        where.append("(start_time < ? OR (start_time = ? AND trace_id < ?))")
        params += [at, at, last_id]
    query = (
        f"SELECT {TRACE_COLUMNS} FROM traces" + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY start_time DESC, trace_id DESC LIMIT ?"
    )
    table = sql.run_trusted(query, params + [limit + 1])
    rows = table.to_pylist()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]["start_time"], rows[-1]["trace_id"])
    state.requests[200] += 1
    return json_response({"traces": rows, "next_cursor": next_cursor})


@router.get("/traces/{trace_id}", summary="One trace: its summary and all its spans in start order")
def get_trace(request: Request, trace_id: str, authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
    state, sql = _reader(request, authorization)
    if not re.fullmatch(r"[0-9a-fA-F]{32}", trace_id):
        raise HTTPProblem(400, "bad_trace_id", f"trace id {trace_id[:64]!r}: use 32 hex digits")
    tid = trace_id.lower()
    spans = sql.run_trusted("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_time, span_id", [tid]).to_pylist()
    if not spans:
        raise HTTPProblem(404, "not_found", f"no spans with trace_id {tid} in the store")
    summary = sql.run_trusted(f"SELECT {TRACE_COLUMNS} FROM traces WHERE trace_id = ?", [tid]).to_pylist()
    state.requests[200] += 1
    return json_response({"trace": summary[0] if summary else None, "spans": spans})


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _encode_cursor(at: dt.datetime, trace_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), trace_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        at, trace_id = loads_limited(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), max_depth=2)
        return dt.datetime.fromisoformat(at), str(trace_id)
    except (ValueError, TypeError):
        raise HTTPProblem(400, "bad_cursor", "cursor is not one this server gave out; start again without it") from None


def answer_response(answer: Answer, fmt: str) -> Response:
    """The answer whole (if it ends within PREFETCH bytes) or streamed; see the module docstring."""
    media = ARROW_STREAM if fmt == "arrow" else "application/json"
    head: list[bytes] = []
    size = 0
    try:
        while size < PREFETCH:
            chunk = answer.next_chunk(wait=1.0)
            if chunk is None:
                error = answer.end.get("error")
                if error:  # nothing sent yet: say it with a status
                    raise problem_error(error)
                headers = {"X-Tracekit-Truncated": "true" if answer.end["truncated"] else "false",
                           "X-Tracekit-Rows": str(answer.end["rows"])}
                return Response(b"".join(head), media_type=media, headers=headers)
            head.append(chunk)
            size += len(chunk)
    except BaseException:
        answer.close(complete=False)
        raise
    return StreamedAnswer(answer, head, media, fmt)


class StreamedAnswer(Response):
    """Relays an Answer's chunks as they come; stops (and kills the worker) if the client leaves."""

    def __init__(self, answer: Answer, head: list[bytes], media_type: str, fmt: str) -> None:
        self.status_code, self.media_type, self.background = 200, media_type, None
        self.init_headers({"X-Tracekit-Streamed": "true"})  # no body: no content-length, chunked
        self.answer, self.head, self.fmt = answer, head, fmt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        finished = False
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with anyio.create_task_group() as tg:

                async def pump() -> None:
                    nonlocal finished
                    try:
                        for chunk in self.head:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        self.head = []
                        while (data := await anyio.to_thread.run_sync(self.answer.next_chunk, 0.5)) is not None:
                            if data:
                                await send({"type": "http.response.body", "body": data, "more_body": True})
                    except QueryError as exc:
                        log.warning("tracekit collector: an SQL answer was cut after it started: %s", exc)
                    else:
                        finished = not (self.fmt == "arrow" and self.answer.end.get("error"))
                        if finished:
                            await send({"type": "http.response.body", "body": b"", "more_body": False})
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(pump)
                tg.start_soon(watch)
        finally:
            self.answer.close(complete=bool(self.answer.end))
        if not finished:  # returning without the last chunk makes the server cut the connection
            log.warning("tracekit collector: an SQL answer did not complete (the client left, or it failed after its first rows)")


def json_response(payload: Any, status: int = 200) -> Response:
    """JSON with datetimes as ISO 8601, decimals as numbers, NaN/inf as null (strict JSON)."""
    return Response(json_text(payload), status_code=status, media_type="application/json")
