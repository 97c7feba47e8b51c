"""What bringing a run's spans home costs: the capped reading, and the store lookup that stops id claims.

    .venv/bin/python bench/spool_ingest.py            # a store of 1,000,000 spans
    .venv/bin/python bench/spool_ingest.py --quick    # 200,000

`tracekit.sandbox._spool.ingest` checks, per run, that every trace id the run brings is its own
trace or new to the store, which reads the `trace_id` column of the store's `spans` files (row
groups skipped by their statistics when they cannot match). This prints, as medians of 5:
ingesting a spool of 1,000 spans (10 traces) into an empty store and into a store of N spans
(compacted, so sorted by trace_id, and not), and ingesting a spool of 100,000 spans.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from tracekit import Store
from tracekit.sandbox._spool import ingest


def spans(n: int, traces: int, rng: random.Random) -> list[dict[str, object]]:
    now = dt.datetime(2026, 1, 1)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(traces)]
    return [dict(trace_id=ids[i % traces], span_id=f"{rng.getrandbits(64) or 1:016x}", name="step", kind="tool",
                 start_time=now, end_time=now, duration_ms=1.0, status="ok", input='"' + "x" * 200 + '"')
            for i in range(n)]


def spool(root: Path, n: int, traces: int, rng: random.Random) -> Path:
    io = root / "io"
    Store(io / "spool").write("spans", spans(n, traces, rng))
    return io


def median_s(fn, inputs: list[Path]) -> float:  # type: ignore[no-untyped-def]
    """Median time of `fn(x)` over `inputs` (each spool is used once: a second ingest would be a claim)."""
    times = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a store of 200,000 spans instead of 1,000,000")
    args = ap.parse_args()
    total = 200_000 if args.quick else 1_000_000
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-spool-") as tmp:
        root = Path(tmp)
        store = Store(root / "big")
        for _ in range(20):
            store.write("spans", spans(total // 20, total // 200, rng))

        def spools(tag: str, n: int, traces: int, k: int = 5) -> list[Path]:
            return [spool(root / f"{tag}-{i}", n, traces, rng) for i in range(k)]

        def into(home: Path, io: Path) -> None:
            count, problems = ingest(io, home, "bench", 64 << 20, run_trace_id="12" * 16, run_span_id="34" * 8, project="b")
            assert count and not problems, problems

        rows = [("1,000 spans into an empty store", median_s(lambda io: into(io.parent / "home", io), spools("e", 1_000, 10))),
                (f"1,000 spans into {total:,} spans (20 files)", median_s(lambda io: into(root / "big", io), spools("b", 1_000, 10)))]
        store.compact("spans")
        rows.append((f"1,000 spans into {total:,} spans (compacted)",
                     median_s(lambda io: into(root / "big", io), spools("c", 1_000, 10))))
        rows.append(("100,000 spans into an empty store",
                     median_s(lambda io: into(io.parent / "home", io), spools("l", 100_000, 1_000, 3))))
        for label, s in rows:
            print(f"{label:48s} {s * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
