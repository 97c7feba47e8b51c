"""Eval harness overhead: what running a case through `run_eval` costs beyond the solver itself.

    .venv/bin/python bench/evals.py            # 2,000 cases
    .venv/bin/python bench/evals.py --quick    # 300 cases

Baseline, measured in the same run: the same traced solver and the same scorer called in a plain
loop inside one tracekit span per case (so tracing itself is in both). Printed: cases per second
for both, the harness's added milliseconds per case (root span, scorer span, row, batched
Parquet writes, the final flush), the Parquet files written, and an async solver that sleeps
10 ms run at concurrency 1 and 16 (the speed-up shows cases overlap as they should).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import tracekit
from tracekit.evals import Sample, Task, run_eval, scorers


@tracekit.trace(kind="agent")
def solve(x: str) -> str:
    return x.upper()


async def sleepy(x: str) -> str:
    await asyncio.sleep(0.01)
    return x.upper()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 300 if args.quick else 2000
    home = tempfile.mkdtemp(prefix="tracekit-bench-evals-")
    tracekit.configure(home=home, project="bench")
    cases = [Sample(f"case {i}", f"CASE {i}", id=f"c{i}") for i in range(n)]
    exact = scorers.exact()

    warm = cases[:50]  # first use loads pyarrow / duckdb and starts the exporter: not what we measure
    for s in warm:
        with tracekit.span("case", kind="eval"):
            exact(solve(s.input), s)
    run_eval(Task(warm, solver=solve, scorers=[exact], name="warmup"))
    tracekit.flush()

    t0 = time.perf_counter()
    for s in cases:
        with tracekit.span("case", kind="eval"):
            exact(solve(s.input), s)
    tracekit.flush()
    base = time.perf_counter() - t0

    task = Task(cases, solver=solve, scorers=[exact], name="bench", concurrency=8)
    t0 = time.perf_counter()
    report = run_eval(task)
    harness = time.perf_counter() - t0
    assert report.metrics["accuracy"] == 1.0 and len(report.rows) == n
    files = len(tracekit.Store(home).files("eval_results")) - 1  # minus the warm-up's

    print(f"cases: {n}")
    print(f"baseline_cases_per_s: {n / base:.0f}")
    print(f"harness_cases_per_s: {n / harness:.0f}")
    print(f"overhead_ms_per_case: {(harness - base) / n * 1000:.2f}")
    print(f"ratio_vs_baseline: {harness / base:.2f}x")
    print(f"eval_results_files: {files}")

    m = 200 if args.quick else 400
    sleepy_cases = cases[:m]
    timings = {}
    for conc in (1, 16):
        t0 = time.perf_counter()
        run_eval(Task(sleepy_cases, solver=sleepy, scorers=[exact], name=f"sleepy{conc}", concurrency=conc))
        timings[conc] = time.perf_counter() - t0
    print(f"async_10ms_cases: {m}")
    print(f"async_concurrency_1_s: {timings[1]:.2f}")
    print(f"async_concurrency_16_s: {timings[16]:.2f}")
    print(f"async_speedup_16_vs_1: {timings[1] / timings[16]:.1f}x")


if __name__ == "__main__":
    main()
