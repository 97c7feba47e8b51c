"""Capped output capture: a pump thread per pipe writes a log file and keeps head and tail in memory.

Reading never waits for EOF alone (a daemon can hold a pipe forever): the pump polls with a
short timeout and stops when told to. Memory is bounded (head + tail ring), the file by the cap.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ._spec import CapturedOutput

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 64 * 1024
CHUNK = 65536


class OutputPump(threading.Thread):
    """Drains `fd` into `path` (up to `cap` bytes), calling `on_limit` once when the cap is passed."""

    def __init__(self, fd: int, path: Path, cap: int, on_limit: Callable[[], None] | None = None,
                 head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES) -> None:
        super().__init__(name=f"tracekit-pump-{path.name}", daemon=True)
        self.fd = fd
        self.path = path
        self.cap = cap
        self.on_limit = on_limit
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.total = 0
        self.written = 0
        self.head = bytearray()
        self._tail = bytearray()  # bytes after the head, last tail_bytes of them
        self.limit_exceeded = False
        self._stop_evt = threading.Event()
        self._stop_deadline = float("inf")
        self._file = open(path, "wb", buffering=0)  # unbuffered: the log is live while the run runs

    def stop(self, drain_s: float = 2.0) -> None:
        """Ask the pump to finish: it drains what is readable (for at most `drain_s`), then exits."""
        self._stop_deadline = time.monotonic() + drain_s
        self._stop_evt.set()

    def run(self) -> None:
        try:
            while True:
                try:
                    ready, _, _ = select.select([self.fd], [], [], 0.1)
                except (OSError, ValueError):
                    break
                if self._stop_evt.is_set() and (not ready or time.monotonic() > self._stop_deadline):
                    break
                if not ready:
                    continue
                try:
                    data = os.read(self.fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._take(data)
        finally:
            self._finish()

    def _take(self, data: bytes) -> None:
        self.total += len(data)
        if self.written < self.cap:
            part = data[: self.cap - self.written]
            self._write_all(part)
            self.written += len(part)
        room = self.head_bytes - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            if len(self._tail) > self.tail_bytes:
                del self._tail[: len(self._tail) - self.tail_bytes]
        if self.total > self.cap and not self.limit_exceeded:
            self.limit_exceeded = True
            if self.on_limit is not None:
                self.on_limit()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            if not n:
                break
            view = view[n:]

    def _finish(self) -> None:
        try:
            if self.total > self.written:
                note = f"\n[tracekit: output cap of {self.cap} bytes reached; {self.total - self.written} bytes not stored; last {len(self._tail)} bytes follow]\n"
                self._write_all(note.encode())
                self._write_all(bytes(self._tail))
            self._file.close()
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

    def result(self) -> CapturedOutput:
        tail = bytes(self._tail)
        truncated = self.total > len(self.head) + len(tail)
        return CapturedOutput(
            head=_decode(bytes(self.head)),
            tail=_decode(tail),
            total_bytes=self.total,
            truncated=truncated,
            path=self.path,
            limit_exceeded=self.limit_exceeded,
        )


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\0", "\ufffd")
