"""Ingest: spans are acknowledged once in the WAL, folded into Parquet in the background, replayed on start.

    ingestor = Ingestor(Store(home), IngestLimits())
    ingestor.start()                          # lock the home, recover, replay the WAL into Parquet
    future = ingestor.submit(table)           # resolves once the spans are fsynced (group commit)
    ingestor.sync()                           # fold everything acknowledged so far (queries see it)
    ingestor.close()                          # final fold, release the home

Exactly-once across SIGKILL: a fold writes ``spans/w-<first>-<last>.parquet`` (the WAL segments it
holds) with `Store.write(durable=True)` and only then deletes those segments. On start, a segment
that a ``w-`` file covers is deleted, every other one is replayed. The fold journal
(``_collector/fold.json``, written before the Parquet file) settles the one case the names cannot:
a crash between rename and delete, then a compaction that merged the ``w-`` file away.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import CollectorError
from .._util.fsio import atomic_write_text
from ..store._store import LOCK, Store
from ._homelock import HomeLock
from ._wal import WriteAheadLog, read_segment

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("tracekit.collector")
_W_NAME = re.compile(r"^w-(\d{12})-(\d{12})\.parquet$")


@dataclass(frozen=True)
class IngestLimits:
    fold_interval: float = 0.5  # seconds between folds into Parquet
    fold_rows: int = 200_000  # fold early once this many spans wait
    max_queued_spans: int = 500_000  # acknowledged-or-waiting spans held in memory before 503
    max_queued_bytes: int = 512 << 20
    commit_batch_bytes: int = 32 << 20  # one group commit writes at most this much


@dataclass
class _Item:
    seq: int
    table: "pa.Table"


@dataclass
class _Entry:
    payload: Any
    table: "pa.Table"
    future: cf.Future[int] = field(default_factory=cf.Future)


def to_ipc(table: "pa.Table") -> Any:
    """A table as one Arrow IPC stream (the WAL record payload), lz4-compressed."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_ipc(payload: bytes) -> "pa.Table":
    import pyarrow as pa

    return pa.ipc.open_stream(payload).read_all()


class Ingestor:
    """Owns the WAL of one store; one per home (an exclusive lock file says so)."""

    def __init__(self, store: Store, limits: IngestLimits | None = None) -> None:
        self.store = store
        self.limits = limits or IngestLimits()
        self.dir = store.home / "_collector"
        self.wal = WriteAheadLog(self.dir / "wal")
        self.journal = self.dir / "fold.json"
        self._queue: queue.Queue[_Entry | None] = queue.Queue()
        self._commit_lock = threading.Lock()  # WAL append + pending append vs. rotate + take
        self._state = threading.Condition()
        self._pending: list[_Item] = []
        self._unfolded: list[_Item] = []  # taken by a fold that has not succeeded yet
        self._queued_spans = 0
        self._queued_bytes = 0
        self._acked_seq = 0
        self._folded_seq = 0
        self._fold_last = 0
        self._leftover: set[int] = set()
        self._fold_wanted = threading.Event()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self.home_lock = HomeLock(self.dir, store.home)
        self.counters = {"accepted": 0, "replayed": 0, "folded": 0, "files": 0, "fold_errors": 0, "commit_errors": 0}
        self.last_error = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.home_lock.claim()  # `tracekit serve` claims it before its banner; tests and threads here
        self.store.table_dir("spans").mkdir(parents=True, exist_ok=True)
        for problem in self.store.recover("spans"):  # a compaction cut short: settle it (readers never do)
            log.warning("tracekit collector: %s", problem)
        self._recover()
        for target in (self._commit_loop, self._fold_loop):
            t = threading.Thread(target=target, name=f"tracekit-{target.__name__[1:]}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Commit what is queued, fold everything, release the home (a graceful shutdown)."""
        if not self.home_lock.held:
            return
        with self._state:
            self._closing = True
            self._queue.put(None)
        self._fold_wanted.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        self._fold()
        self.wal.close()
        self.home_lock.release()

    # -- accepting --------------------------------------------------------------------------

    def overloaded(self) -> bool:
        lim = self.limits
        return self._queued_spans >= lim.max_queued_spans or self._queued_bytes >= lim.max_queued_bytes

    def submit(self, table: "pa.Table", payload: Any | None = None) -> "cf.Future[int]":
        """Queue spans for the next group commit; the future resolves (to the WAL seq) once fsynced."""
        entry = _Entry(payload if payload is not None else to_ipc(table), table)
        with self._state:
            if self._closing or not self.home_lock.held:
                raise CollectorError("the collector is shutting down; retry against the restarted collector")
            self._queued_spans += table.num_rows
            self._queued_bytes += table.nbytes
            self._queue.put(entry)
        return entry.future

    def _commit_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first.payload)
            stop = False
            while size < self.limits.commit_batch_bytes:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += len(nxt.payload)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: Sequence[_Entry]) -> None:
        try:
            with self._commit_lock:
                seq = self.wal.append([e.payload for e in batch])
                with self._state:
                    self._pending.extend(_Item(seq, e.table) for e in batch)
                    self._acked_seq = seq
                    self.counters["accepted"] += sum(e.table.num_rows for e in batch)
                    waiting = self._queued_spans
        except Exception as exc:
            with self._state:
                self.counters["commit_errors"] += 1
                self.last_error = f"WAL write failed: {exc}"
                for e in batch:
                    self._queued_spans -= e.table.num_rows
                    self._queued_bytes -= e.table.nbytes
            log.error("tracekit collector: WAL write failed: %s", exc)
            for e in batch:
                e.future.set_exception(CollectorError(f"could not write the WAL: {exc}"))
            return
        for e in batch:
            e.payload = None
            e.future.set_result(seq)
        if waiting >= self.limits.fold_rows:
            self._fold_wanted.set()

    # -- folding into Parquet -----------------------------------------------------------------

    def _fold_loop(self) -> None:
        while not self._closing:
            self._fold_wanted.wait(self.limits.fold_interval)
            self._fold_wanted.clear()
            if self._closing:
                return
            try:
                self._fold()
            except Exception as exc:  # keep the rows; retry at the next tick
                with self._state:
                    self.counters["fold_errors"] += 1
                    self.last_error = f"fold into Parquet failed: {exc}"
                log.exception("tracekit collector: fold into Parquet failed; will retry")
                time.sleep(min(1.0, self.limits.fold_interval))

    def sync(self, timeout: float = 30.0) -> bool:
        """Wait until every span acknowledged before this call is in Parquet; False on timeout."""
        with self._state:
            target = self._acked_seq
            if self._folded_seq >= target and not self._pending and not self._unfolded:
                return True
        self._fold_wanted.set()
        deadline = time.monotonic() + timeout
        with self._state:
            while self._folded_seq < target or any(i.seq <= target for i in self._pending + self._unfolded):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
        return True

    def _fold(self) -> None:
        with self._commit_lock:
            sealed = self.wal.rotate()
            with self._state:
                if sealed is not None:
                    self._unfolded.extend(i for i in self._pending if i.seq <= sealed)
                    self._pending = [i for i in self._pending if i.seq > sealed]
                    self._fold_last = max(self._fold_last, sealed)
                items = list(self._unfolded)
                last = self._fold_last
        if last <= self._folded_seq and not items:
            self._delete_leftovers()
            return
        segs = [s for s, _ in self.wal.segments() if s <= last]
        self._write_fold(items, segs, last)
        with self._state:
            self._unfolded = []
            self._queued_spans -= sum(i.table.num_rows for i in items)
            self._queued_bytes -= sum(i.table.nbytes for i in items)
            self._folded_seq = max(self._folded_seq, last)
            self._state.notify_all()

    def _write_fold(self, items: Sequence[_Item], segs: Sequence[int], last: int) -> None:
        """Parquet first (durably renamed), then delete the segments; a journal covers the gap."""
        import pyarrow as pa

        rows = sum(i.table.num_rows for i in items)
        if rows:
            first = min(segs) if segs else min(i.seq for i in items)
            name = f"w-{first:012d}-{last:012d}.parquet"
            folder = self.store.table_dir("spans")
            if (folder / name).exists():  # would overwrite stored rows: refuse loudly instead
                raise CollectorError(f"{folder / name} already exists; the WAL numbering is inconsistent")
            atomic_write_text(self.journal, json.dumps({"version": 1, "first": first, "last": last, "file": name}))
            with open(folder / LOCK, "a+") as lock:  # no compaction between rename and delete
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self.store.write("spans", pa.concat_tables([i.table for i in items]), durable=True, name=name)
                except Exception:
                    if not (folder / name).exists():
                        raise  # nothing renamed: the rows stay queued for the next fold
                    log.error("tracekit collector: %s was renamed but the folder sync failed; keeping it", name)
                with self._state:
                    self.counters["folded"] += rows
                    self.counters["files"] += 1
                self._leftover.update(segs)  # from here on the rows are stored: never write them again
                self._delete_leftovers()
            if not self._leftover:
                try:
                    self.journal.unlink(missing_ok=True)
                except OSError:
                    pass  # harmless: the w- file it names exists, so recovery reads it as folded
        else:
            self._leftover.update(segs)
            self._delete_leftovers()

    def _delete_leftovers(self) -> None:
        """Delete folded segments; a failure is retried at the next fold (and covered by the w- name)."""
        if not self._leftover:
            return
        try:
            self.wal.delete(sorted(self._leftover))
            self._leftover.clear()
        except OSError as exc:
            with self._state:
                self.last_error = f"could not delete folded WAL segments: {exc}"
            log.error("tracekit collector: could not delete folded WAL segments: %s", exc)

    # -- recovery -----------------------------------------------------------------------------

    def _covered(self) -> list[tuple[int, int]]:
        out = []
        for p in self.store.table_dir("spans").glob("w-*.parquet"):
            m = _W_NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
        return out

    def _recover(self) -> None:
        """Settle an interrupted fold, drop segments already in Parquet, replay the rest."""
        spans_dir = self.store.table_dir("spans")
        if self.journal.exists():
            try:
                j = json.loads(self.journal.read_text())
                first, last, name = int(j["first"]), int(j["last"]), str(j["file"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CollectorError(f"{self.journal}: unreadable fold journal ({exc}); inspect and remove it") from None
            (spans_dir / (name + ".tmp")).unlink(missing_ok=True)
            segs = [(s, p) for s, p in self.wal.segments() if first <= s <= last]
            if not (spans_dir / name).exists() and segs and self._stored_elsewhere([p for _, p in segs]):
                log.warning("tracekit collector: WAL %s..%s was folded and compacted before a crash; not replaying it", first, last)
                self.wal.delete([s for s, _ in segs])
            self.journal.unlink(missing_ok=True)
        covered = self._covered()
        stale = [s for s, _ in self.wal.segments() if any(a <= s <= b for a, b in covered)]
        self.wal.delete(stale)
        remaining = self.wal.segments()
        items: list[_Item] = []
        for seq, path in remaining:
            records, torn = read_segment(path)
            if torn:
                log.warning("tracekit collector: %s ends in a torn record (a write cut by a crash, never acknowledged)", path.name)
            items.extend(_Item(seq, from_ipc(r)) for r in records)
        last_seq = max([s for s, _ in remaining] + [b for _, b in covered] + [0])
        self.wal.open(last_seq + 1)
        if remaining:
            self._write_fold(items, [s for s, _ in remaining], last_seq)
            if self._leftover:
                raise CollectorError(f"could not delete replayed WAL segments in {self.wal.folder}: {self.last_error}")
            n = sum(i.table.num_rows for i in items)
            self.counters["replayed"] += n
            log.info("tracekit collector: replayed %d spans from %d WAL segment(s)", n, len(remaining))
        self._folded_seq = self._fold_last = last_seq

    def _stored_elsewhere(self, segments: Sequence[Path]) -> bool:
        """Whether every span of these segments already sits in some Parquet file of the store.

        Every span, not a sample: a segment can start with a batch a client resent (its ack was
        lost) whose first copy is stored, followed by spans stored nowhere.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        wanted: set[tuple[str, str]] = set()
        for path in segments:
            records, _ = read_segment(path)
            for record in records:
                t = from_ipc(record)
                pairs = zip(t.column("trace_id").to_pylist(), t.column("span_id").to_pylist())
                wanted.update((tr, sp) for tr, sp in pairs if tr is not None and sp is not None)  # required: never null
        files = [str(p) for p in self.store.files("spans")]
        if not wanted or not files:
            return False
        keys = pa.array(sorted({span_id for _, span_id in wanted}), type=pa.string())
        data = ds.dataset(files, format="parquet").to_table(
            columns=["trace_id", "span_id"], filter=pc.field("span_id").isin(keys)
        )
        stored = set(zip(data.column("trace_id").to_pylist(), data.column("span_id").to_pylist()))
        return wanted <= stored

    # -- reporting ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._state:
            return {
                **self.counters,
                "queued": self._queued_spans,
                "queued_bytes": self._queued_bytes,
                "wal_bytes_written": self.wal.bytes_written,
                "wal_segments": len(self.wal.segments()),
                "last_error": self.last_error or None,
            }
