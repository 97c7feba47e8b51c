"""The web UI on a big store: server time of the trace list and a trace page, next to /api/sql.

    .venv/bin/python bench/ui.py                  # 10^6 spans (100,000 traces of 10 spans), 15 requests per page
    .venv/bin/python bench/ui.py --spans 200000 --repeat 5

It writes a store of agent traces (a root, LLM calls with GenAI messages and tokens, tool calls, an
error in one trace of 17) as Parquet files of 50,000 spans, serves it with `tracekit serve`'s app
(the collector with the pages mounted, on a loopback port, in this process), and times HTTP requests
(warmed up once): each UI page, then the same question asked through POST /api/sql (and GET
/api/traces), in the same run. Printed per question: median and 95th percentile milliseconds, and
the goal (a page under 150 ms). Times are loopback round trips, so they include HTTP and rendering.

Why the pages are fast (tracekit/ui/_traces.py): the list reads root spans with ORDER BY ... LIMIT
(DuckDB keeps a top-N of one scan) and groups spans only for the page's 50 traces, where the
`traces` view groups every span first; a trace page runs the `llm_calls` view scoped to the trace's
spans, where the view over the whole store prices and parses every LLM span.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

GOAL_MS = 150.0
T0 = dt.datetime(2023, 11, 14, 22, 13, 20)  # 1_700_000_000 s: the first trace's start; one trace every 2 s


def _iso(n: int) -> str:
    return (T0 + dt.timedelta(seconds=2 * n)).isoformat(sep=" ")


def build_store(home: Path, spans: int, per_trace: int = 10, per_file: int = 50_000, seed: int = 0) -> list[str]:
    """`spans` spans in traces of `per_trace`; returns the trace ids, oldest first."""
    from tracekit.store._store import Store

    rng = random.Random(seed)
    store = Store(home)
    t0 = 1_700_000_000_000_000
    rows: list[dict[str, Any]] = []
    ids = []
    for t in range(spans // per_trace):
        tid = f"{rng.getrandbits(128):032x}"
        ids.append(tid)
        start = t0 + t * 2_000_000
        root = f"{rng.getrandbits(64):016x}"
        svc = ("agent-a", "agent-b", "eval-runner")[t % 3]
        exp = f"run{t % 7}-{t % 50:04d}" if t % 5 == 0 else None
        err = t % 17 == 0
        question = f"question number {t}: what is {t % 97} * {t % 13}?"
        rows.append(dict(trace_id=tid, span_id=root, parent_span_id=None, name=("answer question", "plan trip", "solve task")[t % 3],
                         kind="agent", start_time=start, end_time=start + 1_500_000, duration_ms=1500.0,
                         status="error" if err else "ok", status_message="tool failed" if err else None, service_name=svc,
                         project="bench", experiment_id=exp, input=json.dumps({"question": question}),
                         output=json.dumps(f"answer {t}"), attributes="{}", events=[], resource=json.dumps({"service.name": svc})))
        history = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        for j in range(per_trace - 1):
            sid = f"{rng.getrandbits(64):016x}"
            s = start + 10_000 + j * 150_000
            if j % 2 == 0:
                out = [{"role": "assistant", "parts": [{"type": "reasoning", "content": "Use the tool."},
                                                       {"type": "tool_call", "id": f"call{j}", "name": "search", "arguments": {"q": question}}]}]
                attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5",
                         "gen_ai.usage.input_tokens": 100 + 40 * j, "gen_ai.usage.output_tokens": 20 + j,
                         "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a helpful agent."}]),
                         "gen_ai.input.messages": json.dumps(history), "gen_ai.output.messages": json.dumps(out)}
                rows.append(dict(trace_id=tid, span_id=sid, parent_span_id=root, name="chat claude-sonnet-4-5", kind="llm", start_time=s,
                                 end_time=s + 140_000, duration_ms=140.0, status="ok", service_name=svc, project="bench",
                                 experiment_id=exp, attributes=json.dumps(attrs), events=[], scope="tracekit.anthropic"))
                history = history + out
            else:
                failed = err and j == per_trace - 2
                rows.append(dict(trace_id=tid, span_id=sid, parent_span_id=root, name="search", kind="tool", start_time=s,
                                 end_time=s + 100_000, duration_ms=100.0, status="error" if failed else "ok", service_name=svc,
                                 project="bench", experiment_id=exp, input=json.dumps({"q": question}), output=json.dumps(["a result"]),
                                 attributes="{}", events=[]))
                history = history + [{"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call{j - 1}", "response": "a result"}]}]
        if len(rows) >= per_file:
            store.write("spans", rows)
            rows = []
    if rows:
        store.write("spans", rows)
    return ids


def timed(client: httpx.Client, method: str, url: str, repeat: int, **kw: Any) -> tuple[list[float], int]:
    client.request(method, url, **kw)  # warm: a worker started, the views bound
    times = []
    status = 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.request(method, url, **kw)
        times.append((time.perf_counter() - t) * 1000)
        status = r.status_code
    return times, status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--home", type=Path, help="keep the store here (default: a temporary folder)")
    args = ap.parse_args()

    from tracekit.collector import CollectorConfig
    from tracekit.collector._server import CollectorThread
    from tracekit.ui import install
    from tracekit.ui._traces import _cursor, scoped_llm_calls

    home = args.home or Path(tempfile.mkdtemp(prefix="tracekit-bench-ui-")) / "home"
    if (home / "spans").exists():
        raise SystemExit(f"{home} has a store already; pass an empty or new folder to --home")
    t = time.perf_counter()
    ids = build_store(home, args.spans)
    print(f"store: {args.spans:,} spans in {len(ids):,} traces, {len(list((home / 'spans').glob('*.parquet')))} files, "
          f"written in {time.perf_counter() - t:.1f} s ({home})")
    tid = ids[len(ids) // 2]
    newest = "SELECT trace_id, span_id, start_time FROM spans WHERE parent_span_id IS NULL ORDER BY start_time DESC, trace_id DESC LIMIT 51"
    questions: list[tuple[str, str, str, dict[str, Any]]] = [
        ("trace list, first page", "GET", "/ui/traces", {}),
        ("  same via /api/sql: the traces view, newest 50", "POST", "/api/sql",
         {"json": {"sql": "SELECT * FROM traces ORDER BY start_time DESC, trace_id DESC LIMIT 50"}}),
        ("  same via /api/sql: the newest 51 root spans, unbounded", "POST", "/api/sql", {"json": {"sql": newest}}),
        ("  same via GET /api/traces (the traces view)", "GET", "/api/traces?limit=50", {}),
        ("trace list, a page half way down the store (cursor)", "GET", "DEEP", {}),
        ("  same via /api/sql: the traces view, 50 before that time", "POST", "/api/sql",
         {"json": {"sql": f"SELECT * FROM traces WHERE start_time < TIMESTAMP '{_iso(len(ids) // 2)}' "
                          "ORDER BY start_time DESC, trace_id DESC LIMIT 50"}}),
        ("trace list, errors only", "GET", "/ui/traces?status=error", {}),
        ("  same via /api/sql: the traces view", "POST", "/api/sql",
         {"json": {"sql": "SELECT * FROM traces WHERE status = 'error' ORDER BY start_time DESC LIMIT 50"}}),
        ("trace list, search 'number 4242' (reads every root span)", "GET", "/ui/traces?q=number+4242", {}),
        ("trace list: cost and tokens of a page (loaded after it)", "GET", "COSTS", {}),
        ("trace page (10 spans, 5 LLM calls)", "GET", f"/ui/traces/{tid}", {}),
        ("  same via /api/sql: spans of the trace", "POST", "/api/sql",
         {"json": {"sql": f"SELECT * FROM spans WHERE trace_id = '{tid}' ORDER BY start_time"}}),
        ("  same via /api/sql: llm_calls scoped to the trace", "POST", "/api/sql",
         {"json": {"sql": scoped_llm_calls(f"trace_id = '{tid}' AND kind = 'llm'").replace("main.spans", "spans")}}),
        ("  same via /api/sql: the llm_calls view WHERE trace_id", "POST", "/api/sql",
         {"json": {"sql": f"SELECT * FROM llm_calls WHERE trace_id = '{tid}'", "timeout": 60}}),
    ]
    config = CollectorConfig.from_env(env={}, home=home, port=0)
    print(f"{'question':58} {'status':>6} {'median ms':>10} {'p95 ms':>8}  goal")
    with CollectorThread(config, extensions=[install]) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        import html
        import re

        costs = re.search(r'hx-get="(/ui/traces/costs\?[^"]+)"', client.get("/ui/traces").text)
        assert costs is not None, "the list page has no cost fragment"
        for label, method, url, kw in questions:
            url = html.unescape(costs.group(1)) if url == "COSTS" else url
            url = "/ui/traces?cursor=" + _cursor(T0 + dt.timedelta(seconds=2 * (len(ids) // 2)), ids[len(ids) // 2]) if url == "DEEP" else url
            times, status = timed(client, method, url, args.repeat if not label.endswith("WHERE trace_id") else 2, **kw)
            med = statistics.median(times)
            p95 = sorted(times)[max(0, int(round(0.95 * len(times))) - 1)]
            goal = "" if label.startswith("  ") else ("ok" if med < GOAL_MS else f"OVER {GOAL_MS:.0f} ms")
            print(f"{label:58} {status:>6} {med:>10.1f} {p95:>8.1f}  {goal}", flush=True)


if __name__ == "__main__":
    main()
