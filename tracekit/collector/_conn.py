"""Connection limits below the app: header time, client stalls, and a cap on open connections.

    protocol = guarded_protocol(ConnLimits(header_timeout=10, max_connections=1000), stats)
    uvicorn.Config(app, http=protocol)        # uvicorn's documented plug point for the HTTP protocol

uvicorn's h11 protocol bounds the idle time between keep-alive requests, but not the time to send
request headers, and nothing bounds how many connections are open: 1,100 clients that open a
connection and send nothing (or one header byte a second) kept `/health` from answering. This
subclass adds, per connection:

- a header deadline: a request's headers must be complete `header_timeout` seconds after its first
  byte (or after the connection opened), else 408 and close;
- a write-stall deadline: a client that reads nothing of an answer for `write_timeout` seconds
  while the server has data for it is cut off (the answer's worker is released);
- a cap on open connections: at the cap, a new connection evicts the oldest one that is not
  being answered (idle between requests, still sending headers, or still sending its body), so
  a flood of idle or slow connections cannot lock anyone out; only if every connection is being
  answered is the new one refused (503, Retry-After).

The request body's deadline and size limits live in the ASGI guard (`_guard`), which can answer
them with a status. The counters are in /health under `connections`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _plain(status: str, text: str, *extra: str) -> bytes:
    body = text.encode() + b"\n"
    head = [f"HTTP/1.1 {status}", "content-type: text/plain; charset=utf-8", "connection: close", *extra,
            f"content-length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_TIMEOUT_408 = _plain("408 Request Timeout", "the request headers took too long; send them at once and retry")
_BUSY_503 = _plain("503 Service Unavailable", "every connection is being answered; retry after the Retry-After delay", "retry-after: 1")


@dataclass(frozen=True)
class ConnLimits:
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    body_timeout: float = 60.0  # seconds from the end of the headers to the end of the body (in _guard)
    write_timeout: float = 60.0  # seconds a client may read nothing of an answer that is waiting for it
    max_connections: int = 1000  # open connections; past it the oldest one not being answered is closed
    idle_timeout: float = 30.0  # seconds a keep-alive connection may sit between requests


@dataclass
class ConnStats:
    open: int = 0
    accepted: int = 0
    evicted: int = 0
    refused: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    write_timeouts: int = 0
    rejected_before_body: int = 0  # 401/403/413 answered without reading the body
    bytes_received: int = 0
    _live: dict[int, "GuardedH11Protocol"] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def guarded_protocol(limits: ConnLimits, stats: ConnStats) -> type[H11Protocol]:
    """An H11Protocol subclass bound to `limits` and `stats` (one per server)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "stats": stats, "_ids": itertools.count()})


class GuardedH11Protocol(H11Protocol):
    limits: ConnLimits
    stats: ConnStats
    _ids: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)  # what H11Protocol takes (its override narrows BaseProtocol's)
        self._id = next(self._ids)
        self._opened = time.monotonic()
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._headers_pending = True
        stats = self.stats
        if len(stats._live) >= self.limits.max_connections and not self._evict_one():
            stats.refused += 1
            tcp.write(_BUSY_503)
            tcp.close()
            self._id = -1
            return
        super().connection_made(tcp)
        stats._live[self._id] = self
        stats.accepted += 1
        stats.open = len(stats._live)
        self._arm_header_timer()

    def _evict_one(self) -> bool:
        """Close the oldest connection not being answered (dicts keep insertion order: oldest first)."""
        for conn in self.stats._live.values():
            if not conn._being_answered():
                self.stats.evicted += 1
                conn._drop()
                return True
        return False

    def _being_answered(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete and not cycle.more_body and not self._headers_pending

    def _drop(self) -> None:
        self._forget()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _forget(self) -> None:
        for timer in (self._header_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = None
        if self.stats._live.pop(self._id, None) is not None:
            self.stats.open = len(self.stats._live)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._headers_pending or self.transport.is_closing():
            return
        self.stats.header_timeouts += 1
        if self.conn.our_state is h11.IDLE:  # nothing of a response was written: say why we hang up
            self.transport.write(_TIMEOUT_408)
        self._forget()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._id < 0:
            return
        self.stats.bytes_received += len(data)
        before = self.cycle
        if not self._headers_pending and (before is None or before.response_complete):
            self._headers_pending = True  # the first bytes of the next request on this connection
            self._arm_header_timer()
        super().data_received(data)
        if self.cycle is not before:  # uvicorn parsed a request line and headers
            self._headers_pending = False
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None and self._id >= 0:
            self._write_timer = self.loop.call_later(self.limits.write_timeout, self._client_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _client_stalled(self) -> None:
        self._write_timer = None
        self.stats.write_timeouts += 1
        self._drop()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._id < 0:
            return
        self._forget()
        super().connection_lost(exc)
