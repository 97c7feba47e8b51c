"""The web UI's ASGI app, and the two ways to serve it.

    install(collector_app)             # tracekit serve: pages at /ui on the collector (create_app extension)
    create_app(UIConfig(home=...))     # tracekit ui: the same pages over a local store, no ingest

Either way the pages are one FastAPI sub-app mounted at /ui behind `PageGuard` (sessions, security
headers, no bodies), reading through a `Source` (`_source`); `/` redirects to `/ui/` keeping its
query (so `/?token=...` signs in). The routes live in `_routes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from ..collector._auth import Tokens
from ..collector._docs import SECURITY_HEADERS
from ..collector._sql import SqlLimits
from ._guard import PREFIX, PageGuard
from ._render import login_page
from ._routes import pages
from ._source import CollectorSource, LocalSource, Source


def build(source: Source) -> PageGuard:
    """The pages (a FastAPI app without docs of its own) behind their guard."""
    return PageGuard(pages(source), source, login_page)


async def _to_pages(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse(PREFIX + "/" + ("?" + query if query else ""), status_code=307, headers=SECURITY_HEADERS)


def install(app: FastAPI) -> None:
    """Mount the pages on the collector's app (its `create_app` extension); they share its SQL pool and tokens."""
    from ..collector._state import CollectorState

    state: CollectorState = app.state.collector  # set by the collector's create_app
    state.delegated_paths = ("/", PREFIX)  # the collector's guard leaves these to PageGuard
    app.router.routes.append(Route("/", _to_pages, include_in_schema=False))
    app.router.routes.append(Route(PREFIX, _to_pages, include_in_schema=False))
    app.mount(PREFIX, build(CollectorSource(state)))


@dataclass(frozen=True)
class UIConfig:
    """`tracekit ui`'s settings: the store, where to listen, SQL limits and tokens (as the collector's)."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4319
    sql: SqlLimits = field(default_factory=SqlLimits)
    tokens: Tokens = field(default_factory=Tokens)
    allow_writes: bool = False  # the annotation and review forms (see `_writes`); off: nothing is written

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")


def create_app(config: UIConfig) -> Starlette:
    """The pages alone over a local store: no WAL, no /v1/traces; nothing written to the store unless `allow_writes`."""
    source = LocalSource(Path(config.home).resolve(), config.sql, config.tokens, config.allow_writes)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            source.close()

    async def health(request: Request) -> Response:
        return Response('{"status": "ok"}', media_type="application/json", headers=SECURITY_HEADERS)

    routes = [Route("/", _to_pages), Route(PREFIX, _to_pages), Route("/health", health), Mount(PREFIX, build(source))]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.source = source
    return app
