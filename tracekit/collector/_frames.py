"""The pipe between the collector and its SQL workers: length-prefixed frames, and JSON text for answers.

    write_frame(fd, HELLO, json_bytes({"pid": 42, "landlock": 7}))
    reader = FrameReader(fd); kind, payload = reader.read(deadline=time.monotonic() + 5)

A frame is one kind byte, a little-endian uint32 length and the payload. The worker sends HELLO
once, then per request either ERROR (nothing was sent: the statement was refused or failed before
its first row), or START, DATA frames (the answer's bytes, JSON text or an Arrow IPC stream, at
most MAX_DATA each) and END. The collector treats the worker as hostile: a frame over MAX_FRAME, an
unknown kind or a late frame ends the worker. JSON answers are encoded here, row by row, the way
`json_text` says, so both processes agree on it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import select
import struct
import time
from typing import Any

from .._util.jsonutil import sql_scalar

HELLO, START, DATA, END, ERROR = b"H", b"S", b"D", b"E", b"X"
KINDS = frozenset({HELLO, START, DATA, END, ERROR})
HEADER = struct.Struct("<cI")
MAX_DATA = 1 << 20  # bytes of answer per DATA frame
MAX_FRAME = 2 << 20  # anything longer is a broken worker


class WorkerGone(Exception):
    """The worker closed the pipe, sent garbage, or missed its deadline."""


def write_frame(fd: int, kind: bytes, payload: bytes = b"") -> None:
    """Write one whole frame to `fd` (blocking: the reader's pace is the writer's pace)."""
    view = memoryview(HEADER.pack(kind, len(payload)) + payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameReader:
    """Reads frames from a pipe with a deadline per call; never more than MAX_FRAME buffered."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()

    def read(self, deadline: float) -> tuple[bytes, bytes]:
        """The next frame; WorkerGone at EOF, on garbage or past `deadline` (time.monotonic)."""
        frame = self.poll(deadline)
        if frame is None:
            raise WorkerGone("the SQL worker did not answer in time")
        return frame

    def poll(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next frame, or None if none is complete by `deadline`."""
        while True:
            if len(self.buf) >= HEADER.size:
                kind, size = HEADER.unpack_from(self.buf)
                if kind not in KINDS or size > MAX_FRAME:
                    raise WorkerGone(f"the SQL worker broke the protocol (frame {kind!r} of {size} bytes)")
                if len(self.buf) >= HEADER.size + size:
                    payload = bytes(self.buf[HEADER.size:HEADER.size + size])
                    del self.buf[:HEADER.size + size]
                    return kind, payload
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.fd, MAX_DATA + HEADER.size)
            if not chunk:
                raise WorkerGone("the SQL worker exited")
            self.buf += chunk


def json_bytes(value: Any) -> bytes:
    return json_text(value).encode()


def json_text(value: Any) -> str:
    """Strict JSON: datetimes as ISO 8601, decimals as numbers, bytes as base64, NaN/inf as null."""
    try:
        return json.dumps(value, default=_default, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), default=_default, ensure_ascii=False, allow_nan=False)


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    converted = sql_scalar(value)
    return str(value) if converted is value else converted  # UUIDs and anything else as text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode_params(params: list[Any] | None) -> list[Any] | None:
    """Query parameters as JSON (datetimes tagged), for the request line to the worker."""
    import datetime as dt

    if params is None:
        return None
    return [{"$datetime": p.isoformat()} if isinstance(p, dt.datetime) else p for p in params]


def decode_params(params: list[Any] | None) -> list[Any] | None:
    import datetime as dt

    if params is None:
        return None
    return [dt.datetime.fromisoformat(p["$datetime"]) if isinstance(p, dict) and "$datetime" in p else p for p in params]
