"""The pages' ASGI guard: who may see them, what every answer carries, and which requests have a body.

    app = PageGuard(ui_app, source, render_login)    # in front of every /ui path, in both servers

A browser cannot send `Authorization: Bearer` when it follows a link, so with tokens configured a
page accepts, in this order:

1. `?token=<read token>` once: exchanged for a session (a random id the server keeps; the token is
   not in it) in an HttpOnly, SameSite=Strict cookie scoped to /ui, then a 303 to the same URL
   without the token, so it leaves the address bar. The token is never written into a page.
2. `Authorization: Bearer <read token>` (curl, scripts), as on /api.
3. the session cookie. It opens /ui pages only: /api still needs the token itself.

Otherwise a GET gets the login page (401; its form POSTs the token to /ui/login). Only the login and
logout forms have bodies: at most LOGIN_BODY bytes, within the body deadline, from this origin
(Sec-Fetch-Site, else Origin);
any other method or body on a page is refused before a byte is read. The vendored files under
/ui/static are public (they hold no data). Every answer carries the security headers of
`collector._docs` (a CSP without inline code, nosniff, no referrer, no framing) and pages
`Cache-Control: no-store`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from starlette.types import Receive, Scope

from ..collector._auth import READ, Tokens
from ..collector._docs import SECURITY_HEADERS
from ._source import Source

PREFIX = "/ui"
STATIC = PREFIX + "/static/"
COOKIE = "tracekit_session"
SESSION_S = 12 * 3600
MAX_SESSIONS = 1000
LOGIN_BODY = 4096
BODY_TIMEOUT = 10.0

Send = Callable[[Any], Awaitable[None]]
LoginPage = Callable[[str, str, int], bytes]  # (next path, message, status) -> HTML


class Sessions:
    """Session ids -> expiry; at most MAX_SESSIONS (the oldest go first). Thread-safe."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._ids[sid] = time.monotonic() + SESSION_S
            while len(self._ids) > MAX_SESSIONS:
                self._ids.popitem(last=False)
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        now = time.monotonic()
        with self._lock:
            found = next((k for k in self._ids if hmac.compare_digest(k, sid)), None) if len(sid) < 100 else None
            if found is None:
                return False
            if self._ids[found] < now:
                del self._ids[found]
                return False
            return True

    def drop(self, sid: str | None) -> None:
        with self._lock:
            if sid:
                self._ids.pop(sid, None)


def may_read(tokens: Tokens, token: str) -> bool:
    scopes = tokens.scopes_for("Bearer " + token) if token else None
    return scopes is not None and READ in scopes


def safe_next(target: str) -> str:
    """Where to go after logging in: a path under /ui of this server, never another site."""
    if target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target and "\r" not in target and "\n" not in target:
        return target
    return PREFIX + "/"


class PageGuard:
    def __init__(self, app: Any, source: Source, login_page: LoginPage) -> None:
        self.app, self.source, self.login_page = app, source, login_page
        self.sessions = Sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = _with_headers(send, static=path.startswith(STATIC))
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in (PREFIX + "/login", PREFIX + "/logout") and method == "POST":
            await self._form(scope, receive, send, headers, login=path.endswith("/login"))
            return
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, "pages are read-only: use GET", [(b"allow", b"GET, HEAD")])
            return
        tokens = self.source.tokens
        if not tokens.enabled or path.startswith(STATIC):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        token = next((v for k, v in query if k == "token"), None)
        here = path + (("?" + urlencode([(k, v) for k, v in query if k != "token"])) if any(k != "token" for k, _ in query) else "")
        if token is not None:
            if may_read(tokens, token):
                await self._start_session(send, safe_next(here))
            else:
                await self._login(send, here, "That token is not one this server knows (or it may not read); paste a read token.", 401)
            return
        auth = headers.get("authorization")
        scopes = tokens.scopes_for(auth) if auth else None
        if scopes is not None and READ in scopes:
            await self.app(scope, receive, send)
            return
        if self.sessions.valid(_cookie(headers)):
            scope.setdefault("state", {})["session"] = True  # the pages offer to sign out
            await self.app(scope, receive, send)
            return
        if auth:
            await self._login(send, here, "The Authorization header's token may not read.", 403)
            return
        await self._login(send, here, "", 401)

    async def _form(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], *, login: bool) -> None:
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        host = headers.get("host", "")
        # Browsers say where a post comes from: Sec-Fetch-Site, else Origin (which is "null" on our own
        # pages' posts under Referrer-Policy: no-referrer, so Sec-Fetch-Site decides for them)
        if site is not None:
            foreign = site not in ("same-origin", "none")
        else:
            foreign = origin is not None and origin.split("://", 1)[-1] != host
        if foreign:
            await _plain(send, 403, "this form only accepts posts from this server's own pages")
            return
        declared = headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > LOGIN_BODY:
            await _plain(send, 413, f"send the form with a Content-Length of at most {LOGIN_BODY} bytes")
            return
        body = await _read_body(receive, LOGIN_BODY, time.monotonic() + BODY_TIMEOUT)
        if body is None:
            await _plain(send, 400, f"the form did not arrive within {BODY_TIMEOUT:g} s or was over {LOGIN_BODY} bytes")
            return
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        target = safe_next(fields.get("next", PREFIX + "/"))
        if not login:
            self.sessions.drop(_cookie(headers))
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", (PREFIX + "/").encode()), (b"set-cookie", _cookie_header("", 0)), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        tokens = self.source.tokens
        if not tokens.enabled:
            await self._start_session(send, target, cookie=False)
        elif may_read(tokens, fields.get("token", "").strip()):
            await self._start_session(send, target)
        else:
            await self._login(send, target, "That token is not one this server knows (or it may not read); paste a read token.", 401)

    async def _start_session(self, send: Send, target: str, *, cookie: bool = True) -> None:
        headers = [(b"location", target.encode("latin-1", "replace")), (b"content-length", b"0")]
        if cookie:
            headers.append((b"set-cookie", _cookie_header(self.sessions.new(), SESSION_S)))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _login(self, send: Send, target: str, message: str, status: int) -> None:
        body = self.login_page(safe_next(target), message, status)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _cookie(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _cookie_header(value: str, max_age: int) -> bytes:
    return f"{COOKIE}={value}; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={max_age}".encode()


def _with_headers(send: Send, *, static: bool) -> Send:
    extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    extra.append((b"cache-control", b"max-age=3600" if static else b"no-store"))
    names = {k for k, _ in extra}

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": kept + extra}
        await send(message)

    return wrapped


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode() + b"\n"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, limit: int, deadline: float) -> bytes | None:
    """The whole body, or None past `limit` bytes, past `deadline`, or when the client leaves."""
    parts: list[bytes] = []
    size = 0
    while True:
        with anyio.move_on_after(max(deadline - time.monotonic(), 0)) as cancel:
            message = await receive()
        if cancel.cancelled_caught or message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
