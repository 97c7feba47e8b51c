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
(Sec-Fetch-Site, else Origin); and the two write forms (annotations, review decisions), which pass
the checks of `_writes` (own origin, a session that may write, size, the session's CSRF token)
before the app sees them, parsed, as `request.state.form`. Any other method or body on a page is
refused before a byte is read. Without tokens but with writes allowed (`tracekit ui
--allow-writes`) every page visit gets a session cookie too, which the forms' CSRF token is bound to. The vendored files under
/ui/static are public (they hold no data). Every answer carries the security headers of
`collector._docs` (a CSP without inline code, nosniff, no referrer, no framing) and pages
`Cache-Control: no-store`.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from starlette.types import Receive, Scope

from ..collector._auth import INGEST, READ, Tokens
from ..collector._docs import SECURITY_HEADERS
from ._source import Source
from ._writes import WRITE_BODY, Session, csrf_ok, csrf_token, same_origin, write_refusal

PREFIX = "/ui"
STATIC = PREFIX + "/static/"
COOKIE = "tracekit_session"
SESSION_S = 12 * 3600
MAX_SESSIONS = 1000
LOGIN_BODY = 4096
BODY_TIMEOUT = 10.0
WRITES = re.compile(r"/ui/annotations|/ui/runs/[A-Za-z0-9._-]{1,64}/review")  # the paths of the write forms

Send = Callable[[Any], Awaitable[None]]
LoginPage = Callable[[str, str, int], bytes]  # (next path, message, status) -> HTML


class Sessions:
    """Session ids -> (expiry, may write); at most MAX_SESSIONS (the oldest go first). Thread-safe."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new(self, *, write: bool = False) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._ids[sid] = Session(time.monotonic() + SESSION_S, write)
            while len(self._ids) > MAX_SESSIONS:
                self._ids.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) >= 100:
            return None
        now = time.monotonic()
        with self._lock:
            found = next((k for k in self._ids if hmac.compare_digest(k, sid)), None)
            if found is None:
                return None
            if self._ids[found].expires < now:
                del self._ids[found]
                return None
            return self._ids[found]

    def valid(self, sid: str | None) -> bool:
        return self.get(sid) is not None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            if sid:
                self._ids.pop(sid, None)


def may_read(tokens: Tokens, token: str) -> bool:
    scopes = tokens.scopes_for("Bearer " + token) if token else None
    return scopes is not None and READ in scopes


def may_ingest(tokens: Tokens, token: str) -> bool:
    """A token that may also write the store (the pages' forms): TRACEKIT_TOKEN, an `all` line, or an `ingest` line
    of a token that may also read (a session needs read to open)."""
    scopes = tokens.scopes_for("Bearer " + token) if token else None
    return scopes is not None and INGEST in scopes


def safe_next(target: str) -> str:
    """Where to go after logging in: a path under /ui of this server, never another site."""
    if target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target and "\r" not in target and "\n" not in target:
        return target
    return PREFIX + "/"


class PageGuard:
    def __init__(self, app: Any, source: Source, login_page: LoginPage) -> None:
        self.app, self.source, self.login_page = app, source, login_page
        self.sessions = Sessions()
        self.key = secrets.token_bytes(32)  # signs the forms' CSRF tokens; a restart invalidates open forms

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
        if method == "POST" and WRITES.fullmatch(path):
            await self._write(scope, receive, send, headers)
            return
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, "pages are read-only: use GET (only the annotation and review forms post)", [(b"allow", b"GET, HEAD")])
            return
        tokens = self.source.tokens
        if path.startswith(STATIC):
            await self.app(scope, receive, send)
            return
        if not tokens.enabled:
            sid = _cookie(headers)
            if self.source.allow_writes and not self.sessions.valid(sid):  # the forms' CSRF token needs a session to bind to
                sid = self.sessions.new(write=True)
                send = _with_cookie(send, sid)
            self._offer_writes(scope, sid, headers)
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        token = next((v for k, v in query if k == "token"), None)
        here = path + (("?" + urlencode([(k, v) for k, v in query if k != "token"])) if any(k != "token" for k, _ in query) else "")
        if token is not None:
            if may_read(tokens, token):
                await self._start_session(send, safe_next(here), write=may_ingest(tokens, token))
            else:
                await self._login(send, here, "That token is not one this server knows (or it may not read); paste a read token.", 401)
            return
        auth = headers.get("authorization")
        scopes = tokens.scopes_for(auth) if auth else None
        if scopes is not None and READ in scopes:
            scope.setdefault("state", {})["writes"] = {"csrf": "", "why": "a script's Bearer token reads the pages; write with "
                                                       "`tracekit annotate` or `tracekit optimize review`, or sign in on the page"}
            await self.app(scope, receive, send)
            return
        if self.sessions.valid(_cookie(headers)):
            scope.setdefault("state", {})["session"] = True  # the pages offer to sign out
            self._offer_writes(scope, _cookie(headers), headers)
            await self.app(scope, receive, send)
            return
        if auth:
            await self._login(send, here, "The Authorization header's token may not read.", 403)
            return
        await self._login(send, here, "", 401)

    def _offer_writes(self, scope: Scope, sid: str | None, headers: dict[str, str]) -> None:
        """What the page's forms need: the session's CSRF token, or why this browser may not write."""
        why = write_refusal(self.source, self.sessions.get(sid), headers.get("host", ""))
        scope.setdefault("state", {})["writes"] = {"csrf": csrf_token(self.key, sid) if sid and why is None else "", "why": why or ""}

    async def _write(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """A write form's post: checked as `_writes` says (origin, permission, size, CSRF), then handed to the app parsed."""
        if not same_origin(headers):
            await _plain(send, 403, "this form only accepts posts from this server's own pages (open the page and send it from there)")
            return
        sid = _cookie(headers)
        why = write_refusal(self.source, self.sessions.get(sid), headers.get("host", ""))
        if why is not None:
            await _plain(send, 403, why)
            return
        declared = headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > WRITE_BODY:
            await _plain(send, 413, f"send the form with a Content-Length of at most {WRITE_BODY} bytes (a note holds 64 Ki characters)")
            return
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            await _plain(send, 415, "send the form as application/x-www-form-urlencoded (as the page's form does)")
            return
        body = await _read_body(receive, WRITE_BODY, time.monotonic() + BODY_TIMEOUT)
        if body is None:
            await _plain(send, 400, f"the form did not arrive within {BODY_TIMEOUT:g} s or was over {WRITE_BODY} bytes")
            return
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if sid is None or not csrf_ok(self.key, sid, fields.get("csrf", "")):
            await _plain(send, 403, "the form's csrf field is not this session's (the page is older than the server, or came from "
                                    "elsewhere): reload the page and send the form again")
            return
        state = scope.setdefault("state", {})
        state.update(form=fields, session=self.source.tokens.enabled)
        replayed = False

        async def replay() -> Any:  # the body was read here; the app gets an empty one, then the connection's own events
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

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
        token = fields.get("token", "").strip()
        if not tokens.enabled:
            await self._start_session(send, target, cookie=False)
        elif may_read(tokens, token):
            await self._start_session(send, target, write=may_ingest(tokens, token))
        else:
            await self._login(send, target, "That token is not one this server knows (or it may not read); paste a read token.", 401)

    async def _start_session(self, send: Send, target: str, *, cookie: bool = True, write: bool = False) -> None:
        headers = [(b"location", target.encode("latin-1", "replace")), (b"content-length", b"0")]
        if cookie:
            headers.append((b"set-cookie", _cookie_header(self.sessions.new(write=write), SESSION_S)))
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


def _with_cookie(send: Send, sid: str) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", _cookie_header(sid, SESSION_S))]}
        await send(message)

    return wrapped


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
