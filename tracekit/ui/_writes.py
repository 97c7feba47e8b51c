"""The pages' only writes: who may send them, and the checks a form post passes before a byte is stored.

    refusal = write_refusal(source, session, host)    # None, or what to do to be allowed
    token = csrf_token(key, session_id)                # the hidden field of every form of that session

Two forms write: an annotation (`POST /ui/annotations`, `store._annotations.write_annotation`) and a
review decision (`POST /ui/runs/<run>/review`, `optimizer._review`, as `tracekit optimize review`).
A post is stored only when all of these hold (checked in this order, by `PageGuard`):

1. it comes from this server's own pages: `Sec-Fetch-Site: same-origin`, or, from a client that
   does not send that header, an `Origin` naming this host (no Origin, or `null`: refused);
2. the server allows writes (`Source.allow_writes`: the collector only with tokens configured,
   `tracekit ui` only with `--allow-writes`), and the browser's session may write: opened with a
   token that may read and ingest (TRACEKIT_TOKEN, or an `all` line) when tokens are on; a read
   token's session only reads. Without tokens (`tracekit ui --allow-writes` alone) the `Host` must
   be a loopback name, so a page reached through DNS rebinding (another site's name resolving to
   127.0.0.1) cannot write;
3. the body is a urlencoded form of at most WRITE_BODY bytes, within the body deadline;
4. its `csrf` field is the session's token: an HMAC of the session id under a key drawn when the
   server started, so a page of another site, which can neither read the cookie nor the page,
   cannot make one.

An `Authorization: Bearer` header opens pages but does not write: scripts have `tracekit annotate`
and `tracekit optimize review`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Protocol

from ..collector._auth import Tokens

WRITE_BODY = 1024 * 1024  # a note of 64 Ki characters, percent-encoded UTF-8, fits
LOOPBACK_NAMES = ("localhost",)


class WriteSource(Protocol):
    @property
    def tokens(self) -> Tokens: ...

    @property
    def allow_writes(self) -> bool: ...

    @property
    def read_only_reason(self) -> str: ...


@dataclass(frozen=True)
class Session:
    """What a browser's session cookie stands for: until when, and whether it may write."""

    expires: float
    write: bool


def csrf_token(key: bytes, session_id: str) -> str:
    return hmac.new(key, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(key: bytes, session_id: str, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(key, session_id), sent)


def loopback_host(host_header: str) -> bool:
    """Whether a Host header names this machine's loopback (127.0.0.0/8, ::1 or localhost), any port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(headers: dict[str, str]) -> bool:
    """A post from this server's own pages (see 1. above): stricter than the login form's check."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = headers.get("origin")
    return origin is not None and origin != "null" and origin.split("://", 1)[-1] == headers.get("host", "")


def write_refusal(source: WriteSource, session: Session | None, host_header: str) -> str | None:
    """Why this browser may not write through the pages now (None: it may)."""
    if not source.allow_writes:
        return source.read_only_reason
    if source.tokens.enabled:
        if session is None:
            return "sign in first (your session expired or was never opened): reload the page"
        if not session.write:
            return ("this session was opened with a read token, which may look but not write: sign out and sign in with a "
                    "token that may ingest (TRACEKIT_TOKEN, or an 'all' line of the tokens file)")
        return None
    if not loopback_host(host_header):
        return (f"writes without tokens are only taken from a loopback address, not Host {host_header[:80]!r}: "
                "open the page as http://127.0.0.1:PORT/ui/, or set TRACEKIT_TOKEN")
    if session is None:
        return "your page is older than this server's session: reload it and send the form again"
    return None
