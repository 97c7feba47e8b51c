"""Overhead of tracekit.instrument_anthropic per call, against the same local Messages API server.

    .venv/bin/python bench/instrumentation.py                   # 30 batches of 20 calls per mode and condition
    .venv/bin/python bench/instrumentation.py --batches 60 --calls 50

The real anthropic SDK calls tests/_support/messages_server.py on 127.0.0.1 (no network). For each mode
(`create`, `create(stream=True)`, `messages.stream()`), batches of the same calls run
uninstrumented and instrumented in turn (alternating which goes first, to share the machine's noise);
spans go to a temporary store through the normal batch exporter and each timing ends with
`tracekit.flush()`, so writing the spans to Parquet is included (the SDK's own span is exported in
both conditions).
The request carries a 10-message history with a tool definition, the answer a thinking block, text
and a tool_use block, so content capture does real work. Reported per mode: the median wall-clock
and CPU ms per call of each condition, the added CPU microseconds per call and the ratios
instrumented / uninstrumented (CPU is the steadier figure on a shared machine). Figures go to stdout
(`key: value` lines) and bench/out/instrumentation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's helpers: tests._support

import anthropic  # noqa: E402

import tracekit  # noqa: E402

from tests._support.messages_server import MessagesServer, reply, text, thinking, tool_use  # noqa: E402

TOOLS = [{"name": "calculator", "description": "Evaluate arithmetic.",
          "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}}}]
HISTORY: list[dict[str, Any]] = []
for i in range(5):
    HISTORY.append({"role": "user", "content": f"Question {i}: what is {i} * 17? Please explain the steps in detail."})
    HISTORY.append({"role": "assistant", "content": f"Step by step: {i} times 17 is {i * 17}. " * 3})
HISTORY.append({"role": "user", "content": "And 6 * 7?"})
ANSWER = reply(thinking("Multiply six by seven with the tool. " * 4), text("Let me compute that for you. " * 4),
               tool_use("calculator", {"expression": "6*7"}, id="toolu_bench"), chunk_chars=64,
               usage={"input_tokens": 400, "output_tokens": 80, "cache_read_input_tokens": 300})


def one_call(client: anthropic.Anthropic, mode: str) -> None:
    kwargs: dict[str, Any] = dict(model="claude-haiku-4-5", max_tokens=256, system="Be exact.", tools=TOOLS, messages=HISTORY)
    if mode == "create":
        client.messages.create(**kwargs)
    elif mode == "stream=True":
        for _ in client.messages.create(stream=True, **kwargs):
            pass
    else:
        with client.messages.stream(**kwargs) as s:
            s.get_final_message()


def timed(client: anthropic.Anthropic, mode: str, calls: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per call, including writing those calls' spans (flushed before the clock stops).

    CPU time is this process's, all threads: client, the in-process server (the same work in both
    conditions) and the span exporter; it is what other processes on a busy machine disturb least.
    """
    tracekit.flush()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        one_call(client, mode)
    tracekit.flush()
    return (time.perf_counter() - w0) / calls * 1000, (time.process_time() - c0) / calls * 1000


def instrumented(client: anthropic.Anthropic, mode: str, calls: int) -> tuple[float, float]:
    tracekit.instrument_anthropic()
    try:
        return timed(client, mode, calls)
    finally:
        tracekit.uninstrument_anthropic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20, help="calls per batch")
    ap.add_argument("--batches", type=int, default=30, help="batches per condition and mode (alternating)")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as home, MessagesServer(responder=lambda body: ANSWER) as server:
        tracekit.configure(home=home, project="bench")
        client = anthropic.Anthropic(base_url=server.url, api_key="bench", max_retries=0)
        warm = 0
        for mode in ("create", "stream=True", "messages.stream"):
            timed(client, mode, 30)  # warm up: connections, imports, first spans and files
            instrumented(client, mode, 30)
            warm += 30
            base: list[tuple[float, float]] = []
            inst: list[tuple[float, float]] = []
            for r in range(args.batches):  # alternate which goes first
                pair = [lambda: base.append(timed(client, mode, args.calls)),
                        lambda: inst.append(instrumented(client, mode, args.calls))]
                for run in (pair if r % 2 == 0 else pair[::-1]):
                    run()
            med = {k: statistics.median(x[i] for x in v) for k, v in (("base", base), ("inst", inst)) for i in (0,)}
            cpu = {k: statistics.median(x[1] for x in v) for k, v in (("base", base), ("inst", inst))}
            low = {k: min(x[0] for x in v) for k, v in (("base", base), ("inst", inst))}
            results[mode] = {
                "wall_ms_baseline": med["base"], "wall_ms_instrumented": med["inst"], "wall_ratio": med["inst"] / med["base"],
                "wall_min_ratio": low["inst"] / low["base"],
                "cpu_ms_baseline": cpu["base"], "cpu_ms_instrumented": cpu["inst"],
                "cpu_overhead_us": (cpu["inst"] - cpu["base"]) * 1000, "cpu_ratio": cpu["inst"] / cpu["base"],
            }
        tracekit.flush()
        recorded = tracekit.query("SELECT count(*) FROM llm_calls WHERE source = 'tracekit'", home=home).fetchall()[0][0]
    expected = 3 * args.batches * args.calls + warm
    print(f"calls_per_batch: {args.calls}")
    print(f"batches: {args.batches}")
    for mode, r in results.items():
        print(f"{mode}: wall {r['wall_ms_baseline']:.3f} -> {r['wall_ms_instrumented']:.3f} ms/call "
              f"(ratio {r['wall_ratio']:.3f}, best-batch ratio {r['wall_min_ratio']:.3f}); "
              f"cpu {r['cpu_ms_baseline']:.3f} -> {r['cpu_ms_instrumented']:.3f} ms/call "
              f"(+{r['cpu_overhead_us']:.0f} us, ratio {r['cpu_ratio']:.3f})")
    print(f"llm_calls_recorded: {recorded} of {expected}")
    print(f"cpu_ratio_worst: {max(r['cpu_ratio'] for r in results.values()):.3f}")
    print(f"wall_ratio_worst: {max(r['wall_ratio'] for r in results.values()):.3f}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "instrumentation.json").write_text(json.dumps(
        {"calls_per_batch": args.calls, "batches": args.batches, "modes": results, "recorded": recorded,
         "expected": expected}, indent=2) + "\n")
    return 0 if recorded == expected else 1


if __name__ == "__main__":
    sys.exit(main())
