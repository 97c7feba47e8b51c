"""Reading the shim's status pipe (`_shim.py`'s protocol): JSON lines, one event each."""

from __future__ import annotations

import os
import select
import time
from typing import Any

from .._util.jsonutil import loads_limited


class StatusReader:
    """The shim's status pipe: JSON lines, each at most 64 KiB and 4 levels deep (anything else is dropped)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        if self.eof:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
        self.buf += data
        events = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                events.append(loads_limited(line, max_bytes=65536, max_depth=4))
            except ValueError:
                pass
        return events
