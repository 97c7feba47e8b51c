"""The collector's write-ahead log: numbered segment files of checksummed records, group-committed.

    wal = WriteAheadLog(home / "_collector" / "wal")
    wal.open(next_seq=1)
    seq = wal.append([payload1, payload2])   # one write + one fdatasync for many requests
    sealed = wal.rotate()                      # close the current segment; later appends go to seq+1
    for seq, path in wal.segments(): records, torn = read_segment(path)

Layout: ``wal-<seq, 12 digits>.log``. A segment starts with the 8-byte header ``TKWAL\\x00\\x01\\n``
(format version 1); each record is ``<u32 length><u32 crc32><payload>``. A record whose length
or checksum does not match (the tail of a write cut short by a crash) ends the segment: it was
never acknowledged, because acknowledgement waits for the fsync that covers it.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

from .._errors import CollectorError
from .._util.fsio import fsync_path

HEADER = b"TKWAL\x00\x01\n"
_REC = struct.Struct("<II")
_NAME = re.compile(r"^wal-(\d{12})\.log$")
MAX_RECORD = 1 << 31


def segment_name(seq: int) -> str:
    return f"wal-{seq:012d}.log"


def read_segment(path: Path) -> tuple[list[bytes], bool]:
    """The records of one segment in order, and whether it ended in a torn (unacknowledged) record."""
    data = path.read_bytes()
    if not data:
        return [], True  # created, crashed before the header reached the disk
    if not data.startswith(HEADER):
        if HEADER.startswith(data):
            return [], True
        raise CollectorError(
            f"{path}: not a tracekit WAL segment (header {data[:8]!r}); move it out of the WAL folder and restart"
        )
    records: list[bytes] = []
    pos = len(HEADER)
    while pos < len(data):
        if pos + _REC.size > len(data):
            return records, True
        length, crc = _REC.unpack_from(data, pos)
        start = pos + _REC.size
        payload = data[start : start + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            return records, True
        records.append(payload)
        pos = start + length
    return records, False


class WriteAheadLog:
    """Append-only segments in one folder; `append` is called by one committer thread at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()  # held across write+sync, rotate and segment listing
        self.seq = 0
        self._fd: int | None = None
        self._size = 0
        self._broken: int | None = None  # a segment closed after a failed write, not yet sealed by rotate()
        self.bytes_written = 0

    def segments(self) -> list[tuple[int, Path]]:
        """(seq, path) of every segment on disk, oldest first."""
        out = []
        for p in self.folder.glob("wal-*.log"):
            m = _NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def open(self, next_seq: int) -> None:
        """Start writing at segment `next_seq` (created lazily by the first append)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seq = next_seq
        self._fd = None
        self._size = 0

    def _create(self) -> int:
        path = self.folder / segment_name(self.seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _write_all(fd, HEADER)
        os.fsync(fd)
        fsync_path(self.folder)  # the new name survives a crash before the first ack
        self._size = len(HEADER)
        return fd

    def append(self, payloads: Sequence[bytes]) -> int:
        """Write `payloads` as records of the current segment and fdatasync; returns its seq."""
        with self.lock:
            if self._fd is None:
                self._fd = self._create()
            parts = []
            for p in payloads:
                if len(p) >= MAX_RECORD:
                    raise CollectorError(f"WAL record of {len(p)} bytes is over the 2 GiB record limit")
                parts.append(_REC.pack(len(p), zlib.crc32(p)))
                parts.append(p)
            blob = b"".join(parts)
            try:
                _write_all(self._fd, blob)
                os.fdatasync(self._fd)
            except OSError:
                # Never append after a half-written record (replay stops there) and never trust a
                # retried fsync: cut the tail off, then continue in a fresh segment.
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None
                self._broken = self.seq
                self.seq += 1
                self._size = 0
                raise
            self._size += len(blob)
            self.bytes_written += len(blob)
            return self.seq

    def rotate(self) -> int | None:
        """Close the current segment if it holds records and return the newest sealed seq (None: nothing new)."""
        with self.lock:
            if self._fd is None:
                sealed, self._broken = self._broken, None
                return sealed
            os.close(self._fd)
            self._fd = None
            sealed = self.seq
            self.seq += 1
            self._size = 0
            self._broken = None
            return sealed

    def current_size(self) -> int:
        return self._size

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove sealed segments (their records are durably in Parquet) and sync the folder."""
        for seq in seqs:
            (self.folder / segment_name(seq)).unlink(missing_ok=True)
        if seqs:
            fsync_path(self.folder)

    def close(self) -> None:
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
