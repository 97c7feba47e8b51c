"""The Parquet store: lock-free concurrent writers, atomic files, versioning, compaction, ingest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tracekit
from tracekit._errors import StoreError
from tracekit.store._schema import SCHEMA_KEY, TABLE_KEY
from tracekit.store._store import JOURNAL, Store
from tracekit.store._tables import SPANS

WRITER = textwrap.dedent(
    """
    import sys, tracekit
    n, tag = int(sys.argv[1]), sys.argv[2]
    tracekit.configure(project=tag)
    for i in range(n):
        with tracekit.span(f"{tag}-{i}"):
            if i % 50 == 0:
                tracekit.flush()   # many small files, written while the others write too
    """
)


def test_many_processes_write_at_once_exact_counts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {"TRACEKIT_HOME": str(home), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, str(script), "400", f"p{k}"], env=env) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = Store(home)
    assert len(store.files("spans")) >= 8  # several flushes per process
    rel = tracekit.query("SELECT project, count(*) AS n, count(DISTINCT span_id) AS u FROM spans GROUP BY 1 ORDER BY 1", home=home)
    assert rel.fetchall() == [(f"p{k}", 400, 400) for k in range(4)]
    assert not list((home / "spans").glob("*.tmp"))


def _write_spans(store: Store, n_files: int, per_file: int) -> None:
    for f in range(n_files):
        store.write("spans", [
            {"trace_id": f"{f:032x}", "span_id": f"{i:016x}", "name": f"s{i % 7}", "kind": "span",
             "start_time": 1_700_000_000_000_000 + i, "end_time": 1_700_000_000_000_100 + i,
             "duration_ms": 0.1, "status": "ok"}
            for i in range(per_file)
        ])


def test_compaction_keeps_every_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    _write_spans(store, 12, 250)
    before = sorted(tracekit.query("SELECT trace_id, span_id FROM spans", home=store.home).fetchall())
    report = store.compact("spans")
    assert (report.files_before, report.files_after) == (12, 1)
    assert report.rows_before == report.rows_after == 3000
    after = sorted(tracekit.query("SELECT trace_id, span_id FROM spans", home=store.home).fetchall())
    assert after == before
    (only,) = store.files("spans")
    ids = pq.read_table(only, columns=["trace_id"]).column(0).to_pylist()
    assert ids == sorted(ids)  # sorted by key: "spans of one trace" can skip row groups
    assert store.compact("spans").files_after == 1  # nothing to do


class _CompactsAfterListing(Store):
    """A store whose next listing of `spans` is followed at once by a real compaction (by another Store)."""

    armed = False

    def files(self, table: str) -> list[Path]:
        listed = super().files(table)
        if self.armed and table == "spans":
            self.armed = False
            Store(self.home).compact("spans")
        return listed


def test_query_survives_a_compaction_between_listing_and_binding(tmp_path: Path) -> None:
    from tracekit.store._database import Database

    store = Store(tmp_path / "home")
    _write_spans(store, 3, 10)
    db = Database(store.home)
    db.store = racing = _CompactsAfterListing(store.home)
    _write_spans(store, 2, 10)  # a new listing, so the next query re-lists (and the compaction follows)
    racing.armed = True
    assert db.sql("SELECT count(*) FROM spans").fetchall() == [(50,)]  # every row, once
    assert not racing.armed and len(store.files("spans")) == 1
    db.close()


def test_interrupted_compaction_rolls_forward(tmp_path: Path) -> None:
    """Crash after the merged file was renamed in but before its sources were deleted."""
    store = Store(tmp_path / "home")
    _write_spans(store, 3, 10)
    folder = store.table_dir("spans")
    sources = [p.name for p in store.files("spans")]
    merged = store.read("spans")
    out = "c-crashed.parquet"
    pq.write_table(merged, folder / out)
    (folder / JOURNAL).write_text(json.dumps({"output": out, "sources": sources}))
    assert tracekit.query("SELECT count(*) FROM spans", home=store.home).fetchall() == [(30,)]
    assert store.files("spans") == [folder / out]  # readers hide the sources and delete nothing
    assert all((folder / s).exists() for s in sources) and (folder / JOURNAL).exists()
    assert store.recover("spans") == []  # a writer settles it
    assert sorted(folder.glob("*.parquet")) == [folder / out] and not (folder / JOURNAL).exists()


def test_interrupted_compaction_before_rename_rolls_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    _write_spans(store, 3, 10)
    folder = store.table_dir("spans")
    (folder / "c-never.parquet.tmp").write_bytes(b"partial")
    (folder / JOURNAL).write_text(json.dumps({"output": "c-never.parquet", "sources": [p.name for p in store.files("spans")]}))
    assert store.row_count("spans") == 30
    assert (folder / JOURNAL).exists()  # reading changed nothing
    assert store.compact("spans", min_files=99).rows_after == 30  # compaction settles it first
    assert not (folder / JOURNAL).exists() and not (folder / "c-never.parquet.tmp").exists()


def test_every_file_carries_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    _write_spans(store, 1, 3)
    meta = pq.ParquetFile(store.files("spans")[0]).schema_arrow.metadata
    assert meta[SCHEMA_KEY] == b"1" and meta[TABLE_KEY] == b"spans"


def test_newer_schema_version_is_refused_with_advice(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    schema = SPANS.arrow_schema().with_metadata({SCHEMA_KEY: b"99", TABLE_KEY: b"spans"})
    folder = store.table_dir("spans")
    folder.mkdir(parents=True)
    pq.write_table(schema.empty_table(), folder / "future.parquet")
    with pytest.raises(StoreError, match="newer than this tracekit's 1; upgrade"):
        store.read("spans")


def test_ingest_validates_and_overrides(tmp_path: Path) -> None:
    spool, store = Store(tmp_path / "spool"), Store(tmp_path / "home")
    _write_spans(spool, 2, 5)
    added = store.ingest("spans", spool.files("spans"), overrides={"experiment_id": "exp-1"})
    assert added == 10
    assert tracekit.query("SELECT DISTINCT experiment_id FROM spans", home=store.home).fetchall() == [("exp-1",)]
    bogus = tmp_path / "bogus.parquet"
    pq.write_table(pa.table({"x": [1]}), bogus)
    with pytest.raises(StoreError, match="no tracekit schema version"):
        store.ingest("spans", [bogus])
    (tmp_path / "link.parquet").symlink_to(spool.files("spans")[0])
    with pytest.raises(StoreError, match="symlink"):
        store.ingest("spans", [tmp_path / "link.parquet"])
    assert store.row_count("spans") == 10  # nothing half-written by the failed ingests


def test_write_rejects_unknown_columns(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown columns"):
        Store(tmp_path).write("spans", [{"nope": 1}])


def test_store_compact_cli(tmp_path: Path) -> None:
    from tracekit._cli.main import main

    store = Store(tmp_path / "home")
    _write_spans(store, 4, 5)
    assert main(["store", "compact", "spans", "--home", str(store.home)]) == 0
    assert len(store.files("spans")) == 1 and store.row_count("spans") == 20
