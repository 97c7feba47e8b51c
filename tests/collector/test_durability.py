"""The collector never loses an acknowledged span and never stores one twice: WAL, folds, replay, SIGKILL."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracekit._errors import CollectorError
from tracekit.collector._pipeline import IngestLimits, Ingestor
from tracekit.collector._wal import HEADER, WriteAheadLog, read_segment
from tracekit.store._store import Store

from tests._support import ROOT
from tests._support.collector import ServeProcess, span_table


def _ids(home: Path) -> list[str]:
    return Store(home).read("spans").column("span_id").to_pylist()


def _segments(home: Path) -> list[Path]:
    return sorted((home / "_collector" / "wal").glob("wal-*.log"))


CRASHER = textwrap.dedent("""
    import time
    from tests._support.collector import span_table
    from tracekit.store._store import Store
    from tracekit.collector._pipeline import IngestLimits, Ingestor
    ing = Ingestor(Store({home!r}), IngestLimits(fold_interval=3600, fold_rows=10**9))
    ing.start()
    for k in range(5):
        futures = [ing.submit(span_table(k * 1000 + j * 10, 10)) for j in range(4)]  # one group commit or several
        for f in futures:
            f.result()
        ing.wal.rotate()  # several segments, as folds would leave them
    print("acked", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def crashed_home(tmp_path: Path) -> Path:
    """A home whose collector acknowledged 200 spans in 5 WAL segments and was SIGKILLed before folding."""
    home = tmp_path / "home"
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER.format(home=str(home)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the crasher imports tests._support like the tests do
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "acked"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(_segments(home)) == 5 and not list((home / "spans").glob("*.parquet"))
    return home


def _restart(home: Path) -> Ingestor:
    ing = Ingestor(Store(home))
    ing.start()
    return ing


def test_replay_after_sigkill_is_exact_and_idempotent(crashed_home: Path) -> None:
    ing = _restart(crashed_home)
    assert ing.stats()["replayed"] == 200
    ing.close()
    ids = _ids(crashed_home)
    assert len(ids) == len(set(ids)) == 200
    assert _segments(crashed_home) == []
    ing = _restart(crashed_home)  # nothing left to replay
    assert ing.stats()["replayed"] == 0
    ing.close()
    assert len(_ids(crashed_home)) == 200


def test_crash_between_parquet_rename_and_segment_delete(crashed_home: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved-wal"
    shutil.copytree(crashed_home / "_collector" / "wal", saved)
    _restart(crashed_home).close()
    for p in saved.glob("wal-*.log"):  # as if the deletes never reached the disk
        shutil.copy(p, crashed_home / "_collector" / "wal" / p.name)
    ing = _restart(crashed_home)
    assert ing.stats()["replayed"] == 0
    ing.close()
    assert len(_ids(crashed_home)) == 200 and _segments(crashed_home) == []


def test_crash_then_compaction_before_restart_is_not_replayed(crashed_home: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved-wal"
    shutil.copytree(crashed_home / "_collector" / "wal", saved)
    _restart(crashed_home).close()
    store = Store(crashed_home)
    store.write("spans", span_table(90_000, 3), durable=True)  # a second file so compaction merges
    w_file = next((crashed_home / "spans").glob("w-*.parquet")).name
    first, last = (int(x) for x in w_file[2:-8].split("-"))
    journal = crashed_home / "_collector" / "fold.json"
    journal.write_text(f'{{"version": 1, "first": {first}, "last": {last}, "file": "{w_file}"}}')
    for p in saved.glob("wal-*.log"):
        shutil.copy(p, crashed_home / "_collector" / "wal" / p.name)
    assert store.compact("spans").files_after == 1  # the w- name is gone; only the journal remembers
    assert not list((crashed_home / "spans").glob("w-*.parquet"))
    ing = _restart(crashed_home)
    assert ing.stats()["replayed"] == 0
    ing.close()
    ids = _ids(crashed_home)
    assert len(ids) == len(set(ids)) == 203 and not journal.exists()


def test_interrupted_fold_led_by_a_resent_batch_loses_nothing(crashed_home: Path) -> None:
    """A client resent a batch (its ack was lost), then new spans; the fold of that segment crashed early."""
    from tracekit.collector._pipeline import to_ipc

    _restart(crashed_home).close()
    w_file = next((crashed_home / "spans").glob("w-*.parquet")).name
    seq = int(w_file[2:-8].split("-")[1]) + 1
    wal = WriteAheadLog(crashed_home / "_collector" / "wal")
    wal.open(seq)
    wal.append([to_ipc(span_table(0, 10)), to_ipc(span_table(50_000, 5))])  # 10 already stored, 5 new
    wal.close()
    journal = crashed_home / "_collector" / "fold.json"
    journal.write_text(f'{{"version": 1, "first": {seq}, "last": {seq}, "file": "w-{seq:012d}-{seq:012d}.parquet"}}')
    ing = _restart(crashed_home)
    assert ing.stats()["replayed"] == 15  # all or nothing: the resent 10 are stored again, as sent
    ing.close()
    new = {r["span_id"] for r in span_table(50_000, 5).to_pylist()}  # type: ignore[attr-defined]
    assert new <= set(_ids(crashed_home)) and _segments(crashed_home) == []


def test_interrupted_fold_without_a_parquet_file_is_replayed(crashed_home: Path) -> None:
    segs = _segments(crashed_home)
    journal = crashed_home / "_collector" / "fold.json"
    name = f"w-{1:012d}-{len(segs):012d}.parquet"
    journal.write_text(f'{{"version": 1, "first": 1, "last": {len(segs)}, "file": "{name}"}}')
    (crashed_home / "spans" / (name + ".tmp")).write_bytes(b"half a parquet file")
    ing = _restart(crashed_home)
    assert ing.stats()["replayed"] == 200
    ing.close()
    assert len(set(_ids(crashed_home))) == 200 and not (crashed_home / "spans" / (name + ".tmp")).exists()


def test_torn_tail_is_dropped_and_the_rest_replayed(crashed_home: Path) -> None:
    last = _segments(crashed_home)[-1]
    records, torn = read_segment(last)
    assert not torn and records
    with open(last, "ab") as f:
        f.write(b"\x00\x10\x00\x00\x12\x34")  # a record header cut short by the crash
    assert read_segment(last) == (records, True)
    ing = _restart(crashed_home)
    ing.close()
    assert len(set(_ids(crashed_home))) == 200


def test_foreign_file_in_the_wal_is_an_error(tmp_path: Path) -> None:
    wal = tmp_path / "home" / "_collector" / "wal"
    wal.mkdir(parents=True)
    (wal / "wal-000000000001.log").write_bytes(b"something else entirely")
    with pytest.raises(CollectorError, match="not a tracekit WAL segment"):
        Ingestor(Store(tmp_path / "home")).start()


def test_group_commit_and_rotation(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.open(7)
    assert wal.rotate() is None  # nothing written: nothing to seal
    assert wal.append([b"a", b"bc"]) == 7
    assert wal.append([b"d"]) == 7
    assert wal.rotate() == 7 and wal.append([b"e"]) == 8
    wal.close()
    assert read_segment(tmp_path / "wal" / "wal-000000000007.log") == ([b"a", b"bc", b"d"], False)
    assert (tmp_path / "wal" / "wal-000000000008.log").read_bytes().startswith(HEADER)


def test_concurrent_submits_share_fsyncs_and_all_fold(tmp_path: Path) -> None:
    ing = Ingestor(Store(tmp_path / "home"), IngestLimits(fold_interval=0.05))
    ing.start()
    futures = []
    threads = [threading.Thread(target=lambda k=k: futures.extend(ing.submit(span_table(k * 100 + j * 5, 5)) for j in range(20)))
               for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(f.result(30) >= 1 for f in futures)
    assert ing.sync(30)
    assert ing.stats()["queued"] == 0
    ing.close()
    ids = _ids(tmp_path / "home")
    assert len(ids) == len(set(ids)) == 800


# -- SIGKILL during a steady stream over HTTP ---------------------------------------------------------


def _bodies(seed: int, n: int, per: int) -> list[tuple[bytes, list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        req = ExportTraceServiceRequest()
        spans = req.resource_spans.add().scope_spans.add().spans
        ids = []
        for _ in range(per):
            s = spans.add()
            s.trace_id, s.span_id = rng.randbytes(16), rng.randbytes(8)
            s.name, s.start_time_unix_nano, s.end_time_unix_nano = "step", 1_700_000_000_000_000_000, 1_700_000_000_100_000_000
            ids.append(s.span_id.hex())
        out.append((req.SerializeToString(), ids))
    return out


def _kill_cycle(home: Path, seed: int, sent: set[str], acked: set[str]) -> int:
    """Stream from 4 threads, SIGKILL the server mid-stream; returns the number of requests in flight."""
    proc = ServeProcess(home)
    stop = threading.Event()
    inflight = [0]
    lock = threading.Lock()

    def stream(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            for body, ids in _bodies(seed * 10 + k, 400, 25):
                if stop.is_set():
                    return
                with lock:
                    sent.update(ids)
                    inflight[0] += 1
                try:
                    r = client.post(proc.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
                except httpx.TransportError:
                    return  # the server died with this request in flight: never acknowledged
                with lock:
                    inflight[0] -= 1
                    if r.status_code == 200:
                        acked.update(ids)

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(random.Random(seed).uniform(0.8, 2.0))
    proc.kill()
    stop.set()
    for t in threads:
        t.join(30)
    return inflight[0]


def _check(home: Path, sent: set[str], acked: set[str], max_unacked: int) -> None:
    proc = ServeProcess(home)
    try:
        r = httpx.post(proc.url + "/api/sql", json={"sql": "SELECT span_id FROM spans", "limit": 10**6}, timeout=60)
        stored = [row["span_id"] for row in r.json()["rows"]]
    finally:
        proc.stop()
    assert len(stored) == len(set(stored)), "a span was stored twice"
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged spans lost"
    assert set(stored) <= sent
    assert len(set(stored) - acked) <= max_unacked * 25  # only spans of requests cut off by the kill


@pytest.mark.parametrize("cycles", [pytest.param(1, id="one-kill"), pytest.param(4, id="four-kills", marks=pytest.mark.slow)])
def test_sigkill_during_a_stream_loses_and_duplicates_nothing(tmp_path: Path, cycles: int) -> None:
    home = tmp_path / "home"
    sent: set[str] = set()
    acked: set[str] = set()
    unacked = 0
    for cycle in range(cycles):
        before = len(acked)
        unacked += _kill_cycle(home, cycle + 1, sent, acked)
        assert len(acked) - before >= 200, "the stream made too little progress before the kill"
    _check(home, sent, acked, unacked)
    assert os.listdir(home / "_collector" / "wal") == []  # the graceful stop folded everything
