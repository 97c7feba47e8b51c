"""Foundation benchmarks: decorator cost, Parquet flush throughput, query latency at 1e5 / 1e6 spans.

    .venv/bin/python bench/foundation.py            # full run (~1-2 min)
    .venv/bin/python bench/foundation.py --quick    # smaller sizes

Every figure is printed next to a baseline measured in the same run (these machines are noisy):
1. one call of a decorated function (capture on) vs the same call inside a bare OpenTelemetry SDK
   span on the same provider and pipeline (goal: ratio <= 1.5x);
2. Parquet flush of finished spans through tracekit's exporter vs a bare `pyarrow` write of the
   same rows already in Arrow form (ratio);
3. "spans of one trace" and "count by name" through tracekit.query at 1e5 and 1e6 spans, before and
   after compaction (how it grows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import tracekit
from tracekit._exporter import ParquetSpanExporter
from tracekit.store._store import Store
from tracekit.store._tables import SPANS


def best_of(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_decorator(n: int) -> None:
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracekit.configure(project="bench", exporter=Drop())  # same pipeline for both; export cost measured in (2)
    bare_tracer = otel_trace.get_tracer("bare")

    def work(question: str, k: int = 3) -> dict[str, Any]:
        return {"answer": question[:10], "k": k}

    traced = tracekit.trace(kind="tool")(work)
    traced_nocap = tracekit.trace(kind="tool", capture_input=False, capture_output=False)(work)

    def run_plain() -> None:
        for _ in range(n):
            work("what is the meaning of life?", k=5)

    def run_bare() -> None:
        for _ in range(n):
            with bare_tracer.start_as_current_span("work"):
                work("what is the meaning of life?", k=5)

    def run_traced() -> None:
        for _ in range(n):
            traced("what is the meaning of life?", k=5)

    def run_nocap() -> None:
        for _ in range(n):
            traced_nocap("what is the meaning of life?", k=5)

    for f in (run_bare, run_traced):  # warm up
        f()
    tracekit.flush()
    plain = best_of(run_plain) / n * 1e6
    bare, traced_t, nocap = [], [], []
    for _ in range(5):  # interleave to share the machine's noise
        bare.append(best_of(run_bare, 1) / n * 1e6)
        traced_t.append(best_of(run_traced, 1) / n * 1e6)
        nocap.append(best_of(run_nocap, 1) / n * 1e6)
        tracekit.flush()
    b, t, c = min(bare), min(traced_t), min(nocap)
    print("1. decorated call vs bare OpenTelemetry SDK span (same provider, batch processor)")
    print(f"   plain call (no tracing)      {plain:8.2f} us")
    print(f"   bare OTel span               {b:8.2f} us")
    print(f"   @tracekit.trace, capture on  {t:8.2f} us   ratio {t / b:.2f}x  (goal <= 1.5x)")
    print(f"   @tracekit.trace, capture off {c:8.2f} us   ratio {c / b:.2f}x")


def make_spans(n: int) -> list[Any]:
    """Real ReadableSpans from the SDK, captured in memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tr = provider.get_tracer("bench")
    payload = "x" * 200
    for i in range(n // 10):
        with tr.start_as_current_span("agent", attributes={"tracekit.kind": "agent", "input.value": payload}):
            for j in range(9):
                with tr.start_as_current_span(f"tool-{j % 3}", attributes={
                    "tracekit.kind": "tool", "input.value": payload, "output.value": payload,
                    "gen_ai.usage.input_tokens": 100 + j, "i": i}):
                    pass
    return list(mem.get_finished_spans())


def bench_flush(n: int) -> None:
    from tracekit._exporter import raw_from_readable
    from tracekit.store._rows import span_row, spans_table

    spans = make_spans(n)
    with tempfile.TemporaryDirectory() as d:
        exporter = ParquetSpanExporter(Store(Path(d) / "a"))
        batches = [spans[i : i + 4096] for i in range(0, len(spans), 4096)]
        arrow_batches = [spans_table([span_row(raw_from_readable(s)) for s in b]) for b in batches]

        def ours() -> None:
            for b in batches:
                exporter.export(b)

        out = Path(d) / "bare"
        out.mkdir()

        def bare() -> None:
            for k, t in enumerate(arrow_batches):
                pq.write_table(t, out / f"{k}.parquet", compression="zstd")

        t_ours, t_bare = best_of(ours, 3), best_of(bare, 3)
    print(f"2. Parquet flush of {len(spans):,} spans (batches of 4096)")
    print(f"   bare pyarrow write (rows already Arrow)   {len(spans) / t_bare:12,.0f} spans/s")
    print(f"   tracekit exporter (convert + write)       {len(spans) / t_ours:12,.0f} spans/s   ratio {t_ours / t_bare:.2f}x time")


def synth_table(n: int, start: int, rng: np.random.Generator) -> pa.Table:
    per_trace = 10
    idx = np.arange(start, start + n)
    trace = idx // per_trace
    names = np.array(["agent", "llm", "tool-search", "tool-calc", "chain"])
    t0 = 1_763_000_000_000_000 + idx * 1000
    dur = rng.integers(100, 100_000, n)
    cols = {
        "trace_id": pa.array([f"{(int(t) * 2654435761) % (1 << 63):032x}" for t in trace]),
        "span_id": pa.array([f"{i:016x}" for i in idx]),
        "parent_span_id": pa.array([None if i % per_trace == 0 else f"{i - i % per_trace:016x}" for i in idx]),
        "name": pa.array(names[idx % 5]),
        "kind": pa.array(np.array(["agent", "llm", "tool", "tool", "chain"])[idx % 5]),
        "start_time": pa.array(t0, type=pa.timestamp("us")),
        "end_time": pa.array(t0 + dur, type=pa.timestamp("us")),
        "duration_ms": pa.array(dur / 1000.0),
        "status": pa.array(np.where(idx % 97 == 0, "error", "ok")),
        "project": pa.array(["bench"] * n),
        "input": pa.array([f'{{"q":"question number {i}"}}' for i in idx]),
        "attributes": pa.array([f'{{"gen_ai.usage.input_tokens":{i % 500}}}' for i in idx]),
    }
    from tracekit.store._store import conform

    return conform(SPANS, pa.table(cols))


def bench_query(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    print("3. query latency through tracekit.query (median of 7, warm)")
    print(f"   {'spans':>9} {'files':>6}  {'one trace':>10}  {'count by name':>14}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            store = Store(Path(d))
            files = 50
            for k in range(files):
                store.write("spans", synth_table(n // files, k * (n // files), rng))
            target = f"{(((n // 2) // 10) * 2654435761) % (1 << 63):032x}"
            for label in (f"{files}", "1*"):
                if label == "1*":
                    store.compact("spans")
                db_home = store.home
                q1 = f"SELECT * FROM spans WHERE trace_id = '{target}'"
                q2 = "SELECT name, count(*) FROM spans GROUP BY name"
                assert len(tracekit.query(q1, home=db_home, flush=False).fetchall()) == 10
                t1, t2 = [], []
                for _ in range(7):
                    t0 = time.perf_counter()
                    tracekit.query(q1, home=db_home, flush=False).fetchall()
                    t1.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    tracekit.query(q2, home=db_home, flush=False).fetchall()
                    t2.append(time.perf_counter() - t0)
                print(f"   {n:>9,} {label:>6}  {statistics.median(t1) * 1e3:8.1f} ms  {statistics.median(t2) * 1e3:12.1f} ms")
    print("   (* after `tracekit store compact`: one file sorted by trace_id)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tracekit.configure(home=Path(d) / "home")
        bench_decorator(2000 if args.quick else 20000)
    bench_flush(20_000 if args.quick else 100_000)
    bench_query([100_000] if args.quick else [100_000, 1_000_000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
