"""What every route of the collector shares: its state, the error answer, the token check.

Apart from `_app` (which builds the app) so the routes in `_read` and the ASGI `_guard` can use
them without importing the app back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse

from ._auth import Tokens
from ._conn import ConnStats
from ._pipeline import Ingestor
from ._settings import CollectorConfig
from ._sqlpool import SqlService

log = logging.getLogger("tracekit.collector")


@dataclass
class CollectorState:
    config: CollectorConfig
    ingestor: Ingestor
    sql: SqlService | None = None
    started: float = field(default_factory=time.time)
    inflight_bytes: int = 0
    rejected_spans: int = 0
    requests: Counter[int] = field(default_factory=Counter)
    sql_error: str = ""
    conn_stats: ConnStats = field(default_factory=ConnStats)
    # paths whose app checks its own credentials before reading a body (the web UI's session cookie):
    # "/" matches itself only, any other entry itself and everything below it
    delegated_paths: tuple[str, ...] = ()
    _sql_lock: threading.Lock = field(default_factory=threading.Lock)

    def sql_service(self) -> SqlService | None:
        """The SQL service, created on first use; None (and `sql_error`) while it cannot start."""
        with self._sql_lock:
            if self.sql is None:
                try:
                    self.sql = SqlService(self.config.home.resolve(), self.config.sql)
                    self.sql_error = ""
                except Exception as exc:
                    self.sql_error = f"{type(exc).__name__}: {exc}"
                    log.error("tracekit collector: SQL is unavailable (ingest goes on): %s", self.sql_error)
            return self.sql

    def delegated(self, path: str) -> bool:
        return any(path == p or (p != "/" and path.startswith(p + "/")) for p in self.delegated_paths)


class HTTPProblem(Exception):
    """An error answer for the JSON API: status, short code and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def problem_response(p: HTTPProblem) -> JSONResponse:
    return JSONResponse({"error": p.code, "message": p.message}, status_code=p.status, headers=p.headers)


def check_token(tokens: Tokens, authorization: str | None, scope: str) -> None:
    """Raise HTTPProblem 401/403 unless the bearer token carries `scope` (no-op without tokens)."""
    if not tokens.enabled:
        return
    scopes = tokens.scopes_for(authorization)
    if scopes is None:
        raise HTTPProblem(
            401, "unauthorized", "send 'Authorization: Bearer <token>' with a token the collector knows",
            {"WWW-Authenticate": "Bearer"},
        )
    if scope not in scopes:
        raise HTTPProblem(403, "forbidden", f"this token may not {scope}; use a token with the {scope!r} scope")


def state_of(request: Request) -> CollectorState:
    collector: CollectorState = request.app.state.collector  # starlette's State holds untyped attributes
    return collector
