"""The ASGI guard in front of FastAPI: the token before the body, and body limits on every route.

    app = Guard(fastapi_app, config, stats)      # what uvicorn serves (see _server)

FastAPI reads and parses a route's JSON body before the handler runs, so a handler that checks the
token reads a 300 MB body first. This wrapper runs before any of that, on every request:

1. Token: with tokens configured, every path but the public ones (/health, /docs and its assets,
   /openapi.json) needs a bearer token with the path's scope (/v1/* ingest, everything else read). A missing or
   wrong one is answered 401/403 at once, without reading a byte of the body, and the connection
   is closed (the unread body goes with it).
2. Size: a declared Content-Length over the route's limit is answered 413 the same way; a body
   without a declared length is counted as it arrives. /v1/traces may send `max_body_bytes`
   (its handler also caps the decompressed size); every other route `max_read_body_bytes`, and
   its body is read here, whole, before FastAPI sees it.
3. Time: a body must arrive within `body_timeout` seconds of the request's headers, else 408.

Refusals are google.rpc.Status bodies on /v1/* (what OTLP exporters expect), JSON
{"error", "message"} elsewhere, and are counted in /health. Paths the state delegates (the web UI,
which accepts a session cookie as well as the token) go to their app untouched: it applies the same
rules itself (`tracekit.ui._guard`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import anyio

from ..store import _otlp
from ._auth import INGEST, READ
from ._conn import ConnStats

if TYPE_CHECKING:
    from ._state import CollectorState

PUBLIC = frozenset({"/health", "/docs", "/openapi.json"})
PUBLIC_PREFIX = "/docs/assets/"  # Swagger UI's vendored files (collector/_docs.py)
_GRPC = {401: 16, 403: 7, 408: 4, 413: 8}


class _Late(Exception):
    """The body did not arrive in time."""


class _Gone(Exception):
    """The client disconnected before its body was whole."""


class Guard:
    def __init__(self, app: Any, state: "CollectorState", stats: ConnStats) -> None:
        self.app, self.state, self.stats = app, state, stats

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cfg = self.state.config
        path = scope["path"]
        if self.state.delegated(path):
            await self.app(scope, receive, send)
            return
        ingest = path.startswith("/v1/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if cfg.tokens.enabled and path not in PUBLIC and not path.startswith(PUBLIC_PREFIX):
            need = INGEST if ingest else READ
            scopes = cfg.tokens.scopes_for(headers.get("authorization"))
            if scopes is None:
                await self._refuse(scope, send, 401, "unauthorized", "send 'Authorization: Bearer <token>' with a token the collector knows",
                                   [(b"www-authenticate", b"Bearer")])
                return
            if need not in scopes:
                await self._refuse(scope, send, 403, "forbidden", f"this token may not {need}; use a token with the {need!r} scope")
                return
        limit = cfg.max_body_bytes if ingest else cfg.max_read_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, 413, "too_large", f"body of {declared} bytes is over the limit of {limit} bytes for {path}; send less")
            return
        deadline = time.monotonic() + cfg.conn.body_timeout
        if ingest:  # the OTLP handler streams the body itself (and caps it): only the deadline here
            await self._timed(scope, receive, send, deadline)
            return
        try:
            body = await self._read_body(receive, limit, deadline)
        except _Gone:
            return  # the client left before its body was whole: nobody to answer
        except _Late:
            self.stats.body_timeouts += 1
            await self._refuse(scope, send, 408, "body_timeout", f"the request body took over {cfg.conn.body_timeout:g} s; send it at once", before_body=False)
            return
        if body is None:
            await self._refuse(scope, send, 413, "too_large", f"body is over the limit of {limit} bytes for {path}; send less", before_body=False)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Any, limit: int, deadline: float) -> bytes | None:
        """The whole body (None past `limit`); _Late past `deadline`."""
        parts: list[bytes] = []
        size = 0
        while True:
            with anyio.move_on_after(max(deadline - time.monotonic(), 0)) as scope:
                message = await receive()
            if scope.cancelled_caught:
                raise _Late
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _timed(self, scope: dict[str, Any], receive: Any, send: Any, deadline: float) -> None:
        """Run the app; if its body reads pass `deadline`, answer 408 and show the app a disconnect."""
        answered = False

        async def timed_receive() -> dict[str, Any]:
            nonlocal answered
            if answered:
                return {"type": "http.disconnect"}
            with anyio.move_on_after(max(deadline - time.monotonic(), 0)) as cancel:
                message: dict[str, Any] = await receive()
            if not cancel.cancelled_caught:
                return message
            if not started:
                self.stats.body_timeouts += 1
                await self._refuse(scope, send, 408, "body_timeout", f"the request body took over {self.state.config.conn.body_timeout:g} s; send it at once",
                                   before_body=False)
                answered = True
            return {"type": "http.disconnect"}

        started = False

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if answered:
                return  # the 408 went out; whatever the app answers to the disconnect is dropped
            started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not answered:
                raise  # after our 408 the app's complaint about the disconnect is expected: drop it

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, code: str, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None, *, before_body: bool = True) -> None:
        self.state.requests[status] += 1
        if before_body:
            self.stats.rejected_before_body += 1
        if scope["path"].startswith("/v1/"):
            ctype = dict(scope["headers"]).get(b"content-type", b"").split(b";", 1)[0].strip().lower().decode("latin-1")
            ctype = ctype if ctype in _otlp.CONTENT_TYPES else _otlp.JSON
            body = _otlp.encode_status(_GRPC.get(status, 2), message, ctype)
        else:
            ctype, body = "application/json", json.dumps({"error": code, "message": message}).encode()
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()), (b"connection", b"close"), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that hands the app the body read already, then waits for the disconnect."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()  # the server's ASGI receive (untyped here)
        return message

    return replay
