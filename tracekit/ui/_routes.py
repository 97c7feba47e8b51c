"""The pages' routes: one FastAPI sub-app, each page one `Reader` (one fold, then SQL).

GET only, but for the two write forms (`_notes`: annotations, `_review`: review decisions), which
PageGuard lets through only after its checks (`_writes`).

Errors are pages too: bad input is a 400 that says what to send, SQL that cannot run now a 503
(with Retry-After), a missing trace or run a 404; none loses or changes anything stored.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from .._errors import QueryError, TracekitError
from ..collector._sql import SqlBusy, SqlRefused, SqlTimeout, SqlWorkerFailed
from . import _console, _evals, _notes, _optimizer, _review, _traces
from ._conversation import conversation
from ._render import page
from ._source import Reader, Source, Unavailable

STATIC = Path(__file__).with_name("static")


def pages(source: Source) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.source = source
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def reader() -> Reader:
        return Reader(source)

    @app.exception_handler(_traces.BadInput)
    async def _bad(request: Request, exc: _traces.BadInput) -> HTMLResponse:
        return page(request, "error.html", 400, title="Bad request", message=str(exc), hint="")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> HTMLResponse:
        message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", exc.status_code, title="Not found" if exc.status_code == 404 else "Refused", message=message,
                    hint="The pages: Traces, Optimizer, Evals and SQL (the links above).")

    @app.exception_handler(TracekitError)
    async def _failed(request: Request, exc: TracekitError) -> HTMLResponse:
        if isinstance(exc, (SqlBusy, SqlWorkerFailed, Unavailable)):
            response = page(request, "error.html", 503, title="Busy", message=str(exc), hint="Reload in a moment.")
            response.headers["Retry-After"] = "2"
            return response
        status = 400 if isinstance(exc, (SqlRefused, SqlTimeout, QueryError)) else 500
        return page(request, "error.html", status, title="The query failed", message=str(exc), hint="")

    @app.get("/")
    def home(request: Request) -> Response:
        return RedirectResponse("/ui/traces", status_code=303)

    # -- traces ---------------------------------------------------------------------------------

    @app.get("/traces")
    def traces(request: Request) -> HTMLResponse:
        f = _traces.Filters.from_query(request.query_params)
        r = reader()
        listing = _traces.list_traces(r, f)
        return page(request, "traces.html", f=f, facets=_traces.facets(r, id(source)), cost_scan=_traces.COST_SCAN, **listing)

    @app.get("/traces/costs")
    def trace_costs(request: Request) -> HTMLResponse:
        ids = [i.strip().lower() for i in request.query_params.get("ids", "").split(",") if i.strip()]
        costs = _traces.trace_costs(reader(), ids, request.query_params.get("since", ""))
        return page(request, "_trace_costs.html", costs=costs, ids=[i for i in ids if i in costs])

    @app.get("/traces/{trace_id}")
    def trace(request: Request, trace_id: str) -> HTMLResponse:
        r = reader()
        found = _traces.load_trace(r, trace_id)
        if found is None:
            return page(request, "error.html", 404, title="No such trace", message=f"no spans with trace id {trace_id.lower()} in this store",
                        hint="Spans from a running program appear once they are flushed.")
        for s in found["spans"]:
            s["conversation"] = conversation(s["llm"]) if s["llm"] else None
        notes = _notes.notes_for(r, "trace", found["summary"]["trace_id"], request.url.path)
        notes["spans"] = [(s["span_id"], s["name"]) for s in found["spans"][: _notes.MAX_LISTED]]  # the form's span menu
        return page(request, "trace.html", notes=notes, **found)

    _optimizer.routes(app, reader)
    _evals.routes(app, reader)
    _console.routes(app, reader)
    _notes.routes(app, reader)
    _review.routes(app, reader)
    return app
