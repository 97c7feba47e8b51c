"""One collector per store: an exclusive lock on `<home>/_collector/collector.lock`, with a note of who holds it.

Two collectors folding one WAL would each replay the other's segments, so the second must not
start. The holder writes its pid and URL into the lock file, so the second `tracekit serve` can
say who is serving, and where, before it prints a banner (the note is another process's text:
parsed within limits, shown cut short and with control characters visible).

    lock = HomeLock(home / "_collector")
    lock.claim()                      # CollectorError naming the holder if another collector has it
    lock.claim(url="http://127.0.0.1:4318")   # once the socket is bound: note where
    lock.release()
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from .._errors import CollectorError


class HomeLock:
    def __init__(self, folder: Path, home: Path) -> None:
        self.path = folder / "collector.lock"
        self.home = home
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def claim(self, url: str | None = None) -> None:
        """Take the lock (idempotent) and note this process (and `url`, once known) in it."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path, "a+")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(lock)
                lock.close()
                raise CollectorError(
                    f"another tracekit collector is serving the store {self.home.resolve()}{holder}; "
                    "use that one, stop it, or serve another store with --home"
                ) from None
            self._file = lock
            self._note(None)
        if url is not None:
            self._note(url)

    def _note(self, url: str | None) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": os.getpid(), "url": url}))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _holder(lock: IO[str]) -> str:
    """' (pid N, on URL)' from the holder's note, or '' when there is none that reads right."""
    from .._util.jsonutil import loads_limited
    from .._util.termtext import clean

    try:
        lock.seek(0)
        note = loads_limited(lock.read(4096))
    except (OSError, ValueError):
        return ""
    if not isinstance(note, dict) or not isinstance(note.get("pid"), int) or isinstance(note.get("pid"), bool):
        return ""
    url = note.get("url")
    where = f", on {clean(url[:200], newlines=False)}" if isinstance(url, str) else ""
    return f" (pid {note['pid']}{where})"
