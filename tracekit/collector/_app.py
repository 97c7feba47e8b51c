"""The collector's FastAPI app: OTLP/HTTP ingest and health; the read API lives in `_read`, the
state every route shares (and the token check) in `_state`.

    from tracekit.collector import CollectorConfig, create_app
    app = create_app(CollectorConfig.from_env(home=".tracekit"))
    # uvicorn.run(app, host="127.0.0.1", port=4318)   or: tracekit serve

POST /v1/traces answers as the OTLP specification says: 200 with an ExportTraceServiceResponse in
the request's encoding (partial_success when spans were rejected) only after the spans are fsynced
in the WAL; otherwise a google.rpc.Status body with 400 (malformed), 401/403 (token), 413 (over
the size limit), 415 (content type or encoding), 429 (too many bytes in flight) or 503 (the store
is behind, or shutting down), the last two with Retry-After.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import __version__
from .._errors import CollectorError, QueryError
from ..store import _otlp
from ..store._store import Store
from ._auth import INGEST
from ._docs import install_docs
from ._guard import Guard
from ._pipeline import Ingestor, to_ipc
from ._read import router
from ._settings import CollectorConfig
from ._sql import SqlBusy, SqlRefused, SqlTimeout, SqlWorkerFailed
from ._sqlpool import SqlService
from ._state import CollectorState, HTTPProblem, check_token, problem_response

log = logging.getLogger("tracekit.collector")

# gRPC status codes for google.rpc.Status bodies
_GRPC = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}


def create_app(config: CollectorConfig, extensions: Sequence[Callable[[FastAPI], None]] = ()) -> FastAPI:
    """The ASGI app; its lifespan replays the WAL before the first request and folds it at shutdown.
    Each of `extensions` is called with the finished app (the web UI mounts its pages this way: the
    collector does not import the layers above it)."""
    home = config.home.resolve()
    state = CollectorState(config=config, ingestor=Ingestor(Store(home), config.ingest))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.ingestor.start)
        await run_in_threadpool(_warm_up)  # import and initialise the decode path before the first request
        try:
            await run_in_threadpool(state.sql_service)  # a broken view must not stop ingest: reads retry it
            yield
        finally:
            await run_in_threadpool(state.ingestor.close)
            if state.sql is not None:
                state.sql.close()

    app = FastAPI(
        title="tracekit collector",
        version=__version__,
        summary="OTLP/HTTP traces into Parquet; read-only SQL over them.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from vendored files (no CDN): install_docs below
        redoc_url=None,
    )
    app.state.collector = state
    app.add_middleware(Guard, state=state, stats=state.conn_stats)  # token and body limits before FastAPI reads a byte

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        state.requests[exc.status] += 1
        return problem_response(exc)

    @app.exception_handler(SqlRefused)
    async def _refused(request: Request, exc: SqlRefused) -> JSONResponse:
        return await _problem(request, HTTPProblem(403, "sql_refused", str(exc)))

    @app.exception_handler(SqlTimeout)
    async def _timeout(request: Request, exc: SqlTimeout) -> JSONResponse:
        return await _problem(request, HTTPProblem(400, "sql_timeout", str(exc)))

    @app.exception_handler(SqlBusy)
    async def _busy(request: Request, exc: SqlBusy) -> JSONResponse:
        return await _problem(request, HTTPProblem(503, "sql_busy", str(exc), {"Retry-After": str(config.retry_after)}))

    @app.exception_handler(SqlWorkerFailed)
    async def _worker_failed(request: Request, exc: SqlWorkerFailed) -> JSONResponse:
        return await _problem(request, HTTPProblem(503, "sql_worker_failed", str(exc), {"Retry-After": str(config.retry_after)}))

    @app.exception_handler(QueryError)
    async def _sql_error(request: Request, exc: QueryError) -> JSONResponse:
        return await _problem(request, HTTPProblem(400, "sql_error", str(exc)))

    @app.get("/health", tags=["health"], summary="Liveness and counters (no token needed)")
    async def health() -> dict[str, Any]:
        stats = state.ingestor.stats()
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - state.started, 3),
            "home": str(home),
            "counters": {
                "spans_accepted": stats["accepted"],
                "spans_rejected": state.rejected_spans,
                "spans_queued": stats["queued"],
                "spans_folded": stats["folded"],
                "spans_replayed": stats["replayed"],
                "parquet_files_written": stats["files"],
                "wal_bytes_written": stats["wal_bytes_written"],
                "wal_segments": stats["wal_segments"],
                "fold_errors": stats["fold_errors"],
                "commit_errors": stats["commit_errors"],
                "requests_by_status": {str(k): v for k, v in sorted(state.requests.items())},
            },
            "connections": state.conn_stats.as_dict(),
            "sql": sql_fence(state.sql),
            "last_error": stats["last_error"],
            "sql_error": state.sql_error or None,
        }

    @app.post(
        "/v1/traces",
        tags=["otlp"],
        summary="OTLP/HTTP trace export (protobuf or JSON, gzip/deflate)",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}}, _otlp.JSON: {"schema": {"type": "object"}}},
            },
            "responses": {"200": {"description": "ExportTraceServiceResponse, in the request's encoding"}},
        },
    )
    async def export_traces(request: Request) -> Response:
        return await _export(state, request)

    app.include_router(router)
    install_docs(app)
    for extend in extensions:
        extend(app)
    return app


def sql_fence(service: SqlService | None) -> dict[str, Any]:
    """What stops a read client from writing: the workers' Landlock, or loudly, only DuckDB's settings."""
    from .._util import landlock as _landlock

    abi = service.landlock if service is not None else _landlock.abi()
    info: dict[str, Any] = service.status() if service is not None else {}
    info["write_fence"] = (
        f"kernel: each SQL worker is read-only under Landlock (ABI {abi}), plus DuckDB's settings"
        if abi else NO_LANDLOCK
    )
    return info


NO_LANDLOCK = (
    "WARNING: this kernel has no Landlock: SQL workers cannot be made read-only by the kernel, and DuckDB's own "
    "settings (allowed_directories, enable_external_access=false, locked) plus the statement check are the only "
    "fences against writes; run on Linux 5.13+ with Landlock enabled (lsm=landlock)"
)


def _otlp_error(state: CollectorState, status: int, message: str, ctype: str, retry: bool = False) -> Response:
    state.requests[status] += 1
    headers = {"Retry-After": str(state.config.retry_after)} if retry else None
    body = _otlp.encode_status(_GRPC.get(status, 2), message, ctype)
    return Response(body, status_code=status, media_type=ctype, headers=headers)


async def _export(state: CollectorState, request: Request) -> Response:
    cfg = state.config
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    reply_type = ctype if ctype in _otlp.CONTENT_TYPES else _otlp.JSON
    try:
        check_token(cfg.tokens, request.headers.get("authorization"), INGEST)
    except HTTPProblem as p:
        return _otlp_error(state, p.status, p.message, reply_type)
    if ctype not in _otlp.CONTENT_TYPES:
        return _otlp_error(state, 415, f"Content-Type {ctype or '(none)'!r} is not supported; use {_otlp.PROTOBUF} or {_otlp.JSON}", reply_type)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in _otlp.ENCODINGS:
        return _otlp_error(state, 415, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none", reply_type)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cfg.max_body_bytes:
        return _otlp_error(state, 413, f"body of {declared} bytes is over the limit of {cfg.max_body_bytes} bytes; send smaller batches", reply_type)
    if state.ingestor.overloaded():
        return _otlp_error(state, 503, "the collector is behind writing Parquet; retry after the Retry-After delay", reply_type, retry=True)
    held = 0
    try:
        chunks = []
        try:
            async for chunk in request.stream():
                if held + len(chunk) > cfg.max_body_bytes:
                    return _otlp_error(state, 413, f"body is over the limit of {cfg.max_body_bytes} bytes; send smaller batches", reply_type)
                if state.inflight_bytes + len(chunk) > cfg.max_inflight_bytes:
                    return _otlp_error(state, 429, "too many request bytes in flight; retry after the Retry-After delay", reply_type, retry=True)
                chunks.append(chunk)
                held += len(chunk)
                state.inflight_bytes += len(chunk)
        except ClientDisconnect:  # gone (or cut off by the guard's body deadline): store none of a partial body
            return Response(status_code=400)
        body = b"".join(chunks)
        del chunks
        project = request.headers.get("x-tracekit-project") or cfg.project
        try:
            loop = asyncio.get_running_loop()
            batch, payload = await loop.run_in_executor(_DECODERS, _decode, body, encoding, ctype, cfg.max_body_bytes, project)
        except _otlp.BodyTooLarge as exc:
            return _otlp_error(state, 413, f"{exc}; send smaller batches", reply_type)
        except _otlp.MalformedRequest as exc:
            return _otlp_error(state, 400, str(exc), reply_type)
        if batch.accepted:
            try:
                await asyncio.wrap_future(state.ingestor.submit(batch.table, payload))
            except CollectorError as exc:
                return _otlp_error(state, 503, f"{exc}; retry after the Retry-After delay", reply_type, retry=True)
        state.rejected_spans += batch.rejected
        state.requests[200] += 1
        return Response(_otlp.encode_response(batch.rejected, batch.message, reply_type), media_type=reply_type)
    finally:
        state.inflight_bytes -= held


# Decoding is CPU-bound Python: more threads than this only fight over the GIL.
_DECODERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="tracekit-decode")


def _warm_up() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x01" * 8, "warm-up"
    for ctype in _otlp.CONTENT_TYPES:
        body = req.SerializeToString() if ctype == _otlp.PROTOBUF else b'{"resourceSpans": []}'
        batch = _otlp.decode(_otlp.decompress(body, "", 1 << 20), ctype)
        to_ipc(batch.table)
        _otlp.encode_response(0, "", ctype)
    _otlp.encode_status(3, "warm-up", _otlp.JSON)


def _decode(body: bytes, encoding: str, ctype: str, limit: int, project: str | None) -> tuple[_otlp.DecodedBatch, Any]:
    raw = _otlp.decompress(body, encoding, limit)
    batch = _otlp.decode(raw, ctype, default_project=project)
    return batch, (to_ipc(batch.table) if batch.accepted else None)
