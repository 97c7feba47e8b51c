"""One status vocabulary: a span either failed or not (`ok | error`) in `spans`, `traces`, `llm_calls` and
`tool_calls`; stores written before the change (`unset`) read the same, and compaction rewrites them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tracekit
from tracekit.store import Database, Store, get_table


@tracekit.trace(kind="tool")
def _tool(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x


@tracekit.trace(kind="agent")
def _agent(xs: list[int]) -> list[int]:
    out = []
    for x in xs:
        try:
            out.append(_tool(x))
        except ValueError:
            pass
    return out


def _legacy_file(home: Path, status: str) -> Path:
    """A spans file as tracekit wrote it before: status 'unset' for a span that did not fail."""
    spec = get_table("spans")
    row = {c: None for c in spec.column_names()}
    row.update(trace_id="a" * 32, span_id="b" * 16, name="old", kind="span", status=status, duration_ms=1.0,
               start_time=pa.scalar(0, pa.timestamp("us")).as_py(), end_time=pa.scalar(1000, pa.timestamp("us")).as_py(),
               events=[], links=[])
    folder = home / "spans"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "20200101T000000-1-0000aaaa.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=spec.arrow_schema()), path)  # raw: no conforming
    return path


def test_every_table_and_view_says_ok_or_error(home: Path) -> None:
    _agent([1, -2])
    tracekit.flush()
    q = tracekit.query
    assert {r[0] for r in q("SELECT DISTINCT status FROM spans").fetchall()} == {"ok", "error"}
    assert q("SELECT status FROM traces").fetchall() == [("error",)]  # a trace with a failed span
    assert q("SELECT count(*) FROM spans WHERE status = 'ok'").fetchall() == [(2,)]  # the filter a user writes
    assert {r[0] for r in q("SELECT DISTINCT status FROM tool_calls").fetchall()} == {"ok", "error"}
    raw = pq.read_table(next((home / "spans").glob("*.parquet"))).column("status").to_pylist()
    assert sorted(raw) == ["error", "ok", "ok"]  # what is stored, not only what the views show


def test_a_store_written_with_unset_reads_ok_everywhere_and_compaction_rewrites_it(home: Path) -> None:
    _legacy_file(home, "unset")
    _agent([3])
    tracekit.flush()
    db = Database(home)
    assert db.sql("SELECT status FROM spans WHERE name = 'old'").fetchall() == [("ok",)]
    assert db.sql("SELECT count(*) FROM spans WHERE status = 'unset'").fetchall() == [(0,)]
    assert db.sql("SELECT status FROM traces WHERE trace_id = '" + "a" * 32 + "'").fetchall() == [("ok",)]
    store = Store(home)
    assert set(store.read("spans").column("status").to_pylist()) == {"ok"}
    report = store.compact("spans")
    assert report.rows_before == report.rows_after == 3
    stored = [v for p in (home / "spans").glob("*.parquet") for v in pq.read_table(p).column("status").to_pylist()]
    assert stored == ["ok"] * 3


def test_rows_written_with_unset_are_stored_as_ok(home: Path) -> None:
    path = _legacy_file(home, "unset")
    rows = pq.read_table(path).to_pylist()
    path.unlink()
    written = Store(home).write("spans", rows)
    assert written is not None and pq.read_table(written).column("status").to_pylist() == ["ok"]


def test_a_tool_call_without_a_result_is_unknown_not_unset(home: Path) -> None:
    """The model asked for a call and no result was ever seen: not a span's 'no error', so its own word."""
    asked = [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "ls", "arguments": {}}]}]
    with tracekit.span("chat m", kind="llm") as s:
        s.set_attribute("gen_ai.operation.name", "chat")
        s.set_attribute("gen_ai.output.messages", json.dumps(asked))
    tracekit.flush()
    assert tracekit.query("SELECT call_id, status, source FROM tool_calls").fetchall() == [("c1", "unknown", "conversation")]


@pytest.mark.parametrize("status", ["ok", "error"])
def test_current_values_read_unchanged(home: Path, status: str) -> None:
    _legacy_file(home, status)
    assert Database(home).sql("SELECT status FROM spans").fetchall() == [(status,)]
