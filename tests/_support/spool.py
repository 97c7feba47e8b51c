"""Helpers for tests/sandbox/test_spool_security.py: forging spool rows, building Parquet bombs, measuring an ingest.

`FORGE` is prepended to candidates so they can write rows of any table straight into their spool,
as an attacker would; the Parquet helpers build hostile files in the test process; the ingest runs
in a fresh interpreter so its peak memory (VmHWM) measures the ingest and nothing else.
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tracekit import Store
from tracekit.store._schema import SCHEMA_KEY, TABLE_KEY

# Prepended to candidates: write rows of any table straight into the spool, as an attacker would.
FORGE = """
    import datetime, os
    from tracekit import Store
    spool = Store(os.environ["TRACEKIT_HOME"])
    _, RUN_TRACE, RUN_SPAN, _ = os.environ["TRACEPARENT"].split("-")
    NOW = datetime.datetime(2026, 1, 1)

    def span(span_id, trace_id=RUN_TRACE, parent=RUN_SPAN, name="mine", **kw):
        return dict(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind="tool", start_time=NOW,
                    end_time=NOW, duration_ms=0.0, status="ok", **kw)

    def eval_run(run_id, event="started"):
        return dict(run_id=run_id, task="t", event=event, time=NOW, experiment_id="someone-else", project="other")

    def eval_result(run_id, case_id, trace_id=None):
        return dict(run_id=run_id, task="t", case_id=case_id, epoch=1, score=1.0, passed=True, status="ok",
                    trace_id=trace_id, experiment_id="someone-else", project="other")
"""


EPOCH = datetime.datetime(2026, 1, 1)


def stored_span(trace_id: str, span_id: str, name: str, **kw: Any) -> dict[str, Any]:
    """A `spans` row as the harness (or another run) would have stored it."""
    return dict(trace_id=trace_id, span_id=span_id, name=name, kind="tool", start_time=EPOCH, end_time=EPOCH,
                duration_ms=0.0, status="ok", **kw)


def forge(code: str) -> str:
    return textwrap.dedent(FORGE) + textwrap.dedent(code) + "\nprint('METRIC ok=1')\n"


def rows(home: Path, table: str) -> list[dict[str, Any]]:
    return Store(home).read(table).to_pylist() if Store(home).files(table) else []


def notes(res: Any) -> str:
    return " | ".join(res.notes)


def parquet_bytes(table: str, data: pa.Table, **kw: Any) -> bytes:
    schema = data.schema.with_metadata({SCHEMA_KEY: b"1", TABLE_KEY: table.encode()})
    buf = io.BytesIO()
    pq.write_table(data.replace_schema_metadata(schema.metadata), buf, **kw)
    return buf.getvalue()


def span_columns(n: int, **override: Any) -> dict[str, Any]:
    ts = pa.array([0] * n, pa.timestamp("us"))
    cols: dict[str, Any] = {"trace_id": pa.array(["12" * 16] * n), "span_id": pa.array([f"{i + 1:016x}" for i in range(n)]),
                            "name": pa.array(["s"] * n), "kind": pa.array(["tool"] * n), "start_time": ts, "end_time": ts,
                            "duration_ms": pa.array([0.0] * n), "status": pa.array(["ok"] * n)}
    cols.update(override)
    return cols


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return bytes(out + bytes([b]))
        out.append(b | 0x80)


def lie_about_sizes(data: bytes) -> bytes:
    """The same file with its footer claiming 1000 bytes for every row group and column chunk size it states."""
    meta = pq.read_metadata(pa.BufferReader(data))
    length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - length
    footer = data[start:start + length]
    sizes = {meta.row_group(r).total_byte_size for r in range(meta.num_row_groups)}
    sizes |= {meta.row_group(r).column(c).total_uncompressed_size for r in range(meta.num_row_groups) for c in range(meta.num_columns)}
    for size in (s for s in sizes if s > 1 << 20):  # long varints: their bytes appear nowhere else
        honest = _varint(size << 1)  # zigzag of a positive i64
        small = bytearray(_varint(1000 << 1))
        while len(small) < len(honest):  # the same length, so every offset stays right
            small[-1] |= 0x80
            small.append(0)
        footer = footer.replace(honest, bytes(small))
    return data[:start] + footer + data[start + length:]


def ingest_in_a_subprocess(io_dir: Path, home: Path, max_bytes: int, **kw: Any) -> dict[str, Any]:
    """Ingest `io_dir` in a fresh interpreter; its peak memory growth during the ingest, rows and problems."""
    code = f"""
        import json, sys
        import pyarrow, pyarrow.parquet, pyarrow.dataset, pyarrow.compute  # imported before the baseline
        from tracekit.sandbox._spans import ingest
        from tracekit.store import _otlp
        import tracekit.store._tables
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        def hwm():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) // 1024

        base = hwm()
        count, problems = ingest({str(io_dir)!r}, {str(home)!r}, "exp-1", {max_bytes}, run_trace_id="12" * 16,
                                 run_span_id="34" * 8, project="p", **{kw!r})
        print(json.dumps({{"growth_mb": hwm() - base, "count": count, "problems": problems}}))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def spool_with(tmp_path: Path, name: str, data: bytes) -> Path:
    spans = tmp_path / name / "spool" / "spans"
    spans.mkdir(parents=True)
    (spans / f"{name}.parquet").write_bytes(data)
    return spans.parent.parent
