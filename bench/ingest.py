"""OTLP ingest: tracekit's collector vs Arize Phoenix vs the bare limit, all in one run, loopback only.

    .venv/bin/python bench/ingest.py                          # 100k spans (collector), 3k (Phoenix)
    .venv/bin/python bench/ingest.py --spans 20000 --skip-phoenix
    .venv/bin/python bench/ingest.py --phoenix-spans 5000 --clients 4 --batch 512

What it measures, with the same spans (seeded ids) and the same batch sizes everywhere:

1. bare limit: decode the protobuf bodies + convert (tracekit.store._rows) + write Parquet durably,
   in this one process, no HTTP (the ceiling for a Python collector on this machine);
2. collector: `tracekit serve` in a subprocess, `--clients` processes of the real OpenTelemetry
   OTLP/HTTP exporter; spans/s until every span is acknowledged (durable in the WAL) and until it
   is queryable in Parquet; once with encoding in the clients' loop, once pre-encoded (server-bound);
3. Phoenix: `phoenix serve` (arize-phoenix, its own venv, created if missing) on loopback; same
   clients; spans/s until every span is in its database (it acknowledges before persisting);
4. queries on the Phoenix-sized data set: "all spans of one trace" and "count by name" through
   the collector's /api/sql vs Phoenix's REST and GraphQL APIs (median of 5).

As root it re-runs itself inside `unshare -n` (a network namespace with only loopback up), so
nothing can reach outside; `--no-netns` skips that. Figures go to stdout and bench/out/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from _ingest_clients import client_spans, run_client  # noqa: E402

PHOENIX_VERSION = "20.26.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the bare limit ---------------------------------------------------------------------------------


def bare_limit(n_traces: int, per_trace: int, clients: int, batch: int, home: Path) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tracekit.store._otlp import decode
    from tracekit.store._store import Store

    bodies = []
    for c in range(clients):
        spans = client_spans(c, clients, n_traces, per_trace)
        bodies += [encode_spans(spans[i : i + batch]).SerializeToString() for i in range(0, len(spans), batch)]
    store = Store(home)
    decode(bodies[0], "application/x-protobuf")  # warm pyarrow up outside the clock
    t0 = time.perf_counter()
    pending, rows, n = [], 0, 0
    for body in bodies:
        t = decode(body, "application/x-protobuf").table
        pending.append(t)
        rows += t.num_rows
        if rows >= 50_000:
            import pyarrow as pa

            store.write("spans", pa.concat_tables(pending), durable=True)
            n += rows
            pending, rows = [], 0
    if pending:
        import pyarrow as pa

        store.write("spans", pa.concat_tables(pending), durable=True)
        n += rows
    elapsed = time.perf_counter() - t0
    assert store.row_count("spans") == n
    return {"spans": n, "seconds": elapsed, "spans_per_s": n / elapsed}


# -- load generation ----------------------------------------------------------------------------------


def drive(endpoint: str, n_traces: int, per_trace: int, clients: int, batch: int, pre_encoded: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=run_client, args=(c, clients, n_traces, per_trace, batch, endpoint, pre_encoded, barrier, results))
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=600)
    t0 = time.time()
    out = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join(60)
    ok = sum(r[1] for r in out)
    failed = sum(r[2] for r in out)
    return {"t0": t0, "acked": ok, "failed": failed, "acked_s": max(r[3] for r in out) - t0, "clients_cpu_s": sum(r[4] for r in out)}


# -- the collector ------------------------------------------------------------------------------------


class Collector:
    def __init__(self, home: Path) -> None:
        self.log = home.parent / "collector.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "tracekit", "serve", "--home", str(home), "--port", "0"],
                                         stdout=f, stderr=subprocess.STDOUT, env=env)
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            for line in self.log.read_text().splitlines():
                if "collector on " in line:
                    self.url = line.split("collector on ", 1)[1].split()[0]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("collector did not start:\n" + self.log.read_text())
            time.sleep(0.05)
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def sql(self, query: str) -> list[dict[str, Any]]:
        r = httpx.post(self.url + "/api/sql", json={"sql": query}, timeout=300)
        r.raise_for_status()
        return r.json()["rows"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def run_collector(tmp: Path, name: str, n_traces: int, per_trace: int, clients: int, batch: int, pre_encoded: bool) -> tuple[dict[str, Any], Collector]:
    home = tmp / name / "home"
    home.mkdir(parents=True)
    col = Collector(home)
    cpu0 = cpu_seconds(col.proc.pid)
    run = drive(col.url + "/v1/traces", n_traces, per_trace, clients, batch, pre_encoded)
    stored = col.sql("SELECT count(*) AS n FROM spans")[0]["n"]  # a read folds every acknowledged span first
    run["stored_s"] = time.time() - run["t0"]
    run["stored"] = stored
    run["distinct"] = col.sql("SELECT count(DISTINCT span_id) AS n FROM spans")[0]["n"]
    run["server_cpu_s"] = cpu_seconds(col.proc.pid) - cpu0
    run["spans_per_s_acked"] = run["acked"] / run["acked_s"]
    run["spans_per_s_stored"] = stored / run["stored_s"]
    run["health"] = httpx.get(col.url + "/health").json()["counters"]
    return run, col


# -- Phoenix -----------------------------------------------------------------------------------------


def ensure_phoenix(venv: Path) -> Path:
    exe = venv / "bin" / "phoenix"
    if exe.exists():
        return exe
    print(f"creating {venv} with arize-phoenix=={PHOENIX_VERSION} (a few minutes, once)", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"arize-phoenix=={PHOENIX_VERSION}"], check=True)
    return exe


class Phoenix:
    def __init__(self, exe: Path, work: Path) -> None:
        self.port = free_port()
        self.work = work
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))},
            "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(self.port), "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_WORKING_DIR": str(work), "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        self.log = work.parent / "phoenix.log"
        t0 = time.perf_counter()
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen([str(exe), "serve"], stdout=f, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        while True:
            if self.proc.poll() is not None or time.perf_counter() - t0 > 180:
                raise RuntimeError("phoenix did not start:\n" + self.log.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.startup_s = time.perf_counter() - t0

    def count(self) -> int:
        dbs = sorted(self.work.glob("*.db"))
        if not dbs:
            return 0
        con = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM spans").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def run_phoenix(exe: Path, tmp: Path, n_traces: int, per_trace: int, clients: int, batch: int) -> tuple[dict[str, Any], Phoenix]:
    work = tmp / "phoenix" / "work"
    work.mkdir(parents=True)
    phx = Phoenix(exe, work)
    cpu0 = cpu_seconds(phx.proc.pid)
    run = drive(phx.url + "/v1/traces", n_traces, per_trace, clients, batch, pre_encoded=False)
    want = n_traces * per_trace
    deadline = time.time() + 900
    stored = 0
    while time.time() < deadline:
        stored = phx.count()
        if stored >= want:
            break
        time.sleep(0.1)
    run.update(stored=stored, stored_s=time.time() - run["t0"], startup_s=phx.startup_s, server_cpu_s=cpu_seconds(phx.proc.pid) - cpu0)
    run["spans_per_s_acked"] = run["acked"] / run["acked_s"]
    run["spans_per_s_stored"] = stored / run["stored_s"]
    return run, phx


# -- queries -------------------------------------------------------------------------------------------


def median_ms(fn: Any, repeat: int = 5) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def query_times(col: Collector, phx: Phoenix, trace_id: str, names: list[str]) -> dict[str, Any]:
    c = httpx.Client(timeout=300)
    res: dict[str, Any] = {}
    res["trace_spans_collector_sql_ms"], rows = median_ms(lambda: c.post(col.url + "/api/sql", json={"sql": f"SELECT * FROM spans WHERE trace_id = '{trace_id}' ORDER BY start_time"}).json()["rows"])
    res["trace_spans_collector_n"] = len(rows)
    res["trace_spans_collector_api_ms"], _ = median_ms(lambda: c.get(col.url + f"/api/traces/{trace_id}").json())
    res["trace_spans_phoenix_rest_ms"], data = median_ms(lambda: c.get(phx.url + "/v1/projects/default/spans", params={"trace_id": trace_id, "limit": 1000}).json())
    res["trace_spans_phoenix_n"] = len(data.get("data", []))
    res["count_by_name_collector_sql_ms"], rows = median_ms(lambda: c.post(col.url + "/api/sql", json={"sql": "SELECT name, count(*) AS n FROM spans GROUP BY name"}).json()["rows"])
    res["count_by_name_collector"] = {r["name"]: r["n"] for r in rows}
    fields = " ".join(f"n{i}: recordCount(filterCondition: {json.dumps(f'name == {n!r}')})" for i, n in enumerate(names))
    gql = {"query": f"query {{ projects {{ edges {{ node {{ name {fields} }} }} }} }}"}
    res["count_by_name_phoenix_graphql_ms"], data = median_ms(lambda: c.post(phx.url + "/graphql", json=gql).json())
    try:
        node = next(e["node"] for e in data["data"]["projects"]["edges"] if e["node"]["name"] == "default")
        res["count_by_name_phoenix"] = {n: node[f"n{i}"] for i, n in enumerate(names)}
    except (KeyError, TypeError, StopIteration):
        res["count_by_name_phoenix"] = {"error": str(data)[:300]}

    def paginate() -> dict[str, int]:
        counts: dict[str, int] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = c.get(phx.url + "/v1/projects/default/spans", params=params).json()
            for s in page.get("data", []):
                counts[s["name"]] = counts.get(s["name"], 0) + 1
            cursor = page.get("next_cursor")
            if not cursor:
                return counts

    res["count_by_name_phoenix_rest_paginate_ms"], res["count_by_name_phoenix_rest"] = median_ms(paginate, repeat=3)
    return res


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=100_000, help="spans for the collector and the bare limit")
    ap.add_argument("--phoenix-spans", type=int, default=3_000, help="spans for Phoenix (and the collector's same-size run)")
    ap.add_argument("--per-trace", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512, help="spans per export request (the BatchSpanProcessor default)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent exporter processes")
    ap.add_argument("--rounds", type=int, default=3, help="bare/collector rounds (figures per round, then the best)")
    ap.add_argument("--phoenix-venv", type=Path, default=BENCH / ".venv-phoenix")
    ap.add_argument("--skip-phoenix", action="store_true")
    ap.add_argument("--no-netns", action="store_true", help="do not re-run inside `unshare -n`")
    ap.add_argument("--out", type=Path, default=BENCH / "out" / "ingest.json")
    args = ap.parse_args()

    exe = None if args.skip_phoenix else ensure_phoenix(args.phoenix_venv)  # before the netns: pip needs the registry
    if not args.no_netns and os.geteuid() == 0 and shutil.which("unshare") and not os.environ.get("TRACEKIT_BENCH_NETNS"):
        cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *sys.argv]
        return subprocess.run(cmd, env={**os.environ, "TRACEKIT_BENCH_NETNS": "1"}).returncode

    per = args.per_trace
    big, small = args.spans // per, args.phoenix_spans // per
    report: dict[str, Any] = {"config": {**{k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(),
                                         "netns": bool(os.environ.get("TRACEKIT_BENCH_NETNS"))}}
    with tempfile.TemporaryDirectory(prefix="tk-bench-ingest-") as d:
        tmp = Path(d)
        for rnd in range(1, args.rounds + 1):  # rounds interleave the three so machine load hits them alike
            res: dict[str, Any] = {"loadavg_before": os.getloadavg()[0]}
            print(f"round {rnd}/{args.rounds} (load average {res['loadavg_before']:.1f})", flush=True)
            res["bare"] = bare_limit(big, per, args.clients, args.batch, tmp / f"bare{rnd}")
            print(f"  bare limit: {res['bare']['spans_per_s']:,.0f} spans/s ({big * per} spans, decode + convert + durable Parquet, one process)", flush=True)
            for mode, pre in (("collector_export", False), ("collector_pre_encoded", True)):
                run, col = run_collector(tmp, f"{mode}{rnd}", big, per, args.clients, args.batch, pre)
                col.stop()
                res[mode] = run
                print(f"  {mode}: acked {run['spans_per_s_acked']:,.0f} spans/s, queryable {run['spans_per_s_stored']:,.0f} spans/s, "
                      f"stored {run['stored']} / sent {big * per}, failed {run['failed']}", flush=True)
            report.setdefault("rounds", []).append(res)
        if exe is not None:
            print(f"phoenix {PHOENIX_VERSION}: {small * per} spans, same clients ...", flush=True)
            prun, phx = run_phoenix(exe, tmp, small, per, args.clients, args.batch)
            report["phoenix"] = prun
            print(f"  started in {prun['startup_s']:.1f} s; acked {prun['spans_per_s_acked']:,.0f} spans/s, "
                  f"persisted {prun['spans_per_s_stored']:,.0f} spans/s ({prun['stored']} / {small * per})", flush=True)
            print(f"collector, same {small * per} spans (for the rate at that size and the queries) ...", flush=True)
            srun, col = run_collector(tmp, "collector_small", small, per, args.clients, args.batch, False)
            report["collector_small"] = srun
            trace_id = col.sql("SELECT trace_id FROM spans ORDER BY trace_id LIMIT 1")[0]["trace_id"]
            names = [r["name"] for r in col.sql("SELECT DISTINCT name FROM spans ORDER BY 1")]
            report["queries"] = query_times(col, phx, trace_id, names)
            col.stop()
            phx.stop()
    summarize(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 0


def summarize(r: dict[str, Any]) -> None:
    print("\n== ingest, spans/s ('queryable' = every acknowledged span in Parquet; Phoenix 'persisted' = in its DB) ==")
    best: dict[str, float] = {}
    for i, rnd in enumerate(r.get("rounds", []), 1):
        bare = rnd["bare"]["spans_per_s"]
        line = [f"round {i} (load {rnd['loadavg_before']:.1f}): bare {bare:,.0f}"]
        for key in ("collector_export", "collector_pre_encoded"):
            x = rnd[key]
            ratio = x["spans_per_s_stored"] / bare
            best[key] = max(best.get(key, 0.0), ratio)
            best[key + "_rate"] = max(best.get(key + "_rate", 0.0), x["spans_per_s_stored"])
            lost = x["acked"] + x["failed"] - x["stored"]
            line.append(f"{key} {x['spans_per_s_stored']:,.0f} ({ratio:.0%} of bare; acked {x['spans_per_s_acked']:,.0f}; "
                        f"stored {x['stored']}, distinct {x['distinct']}, failed {x['failed']}, unaccounted {lost}, "
                        f"CPU us/span: server {x['server_cpu_s'] / x['stored'] * 1e6:.0f}, clients {x['clients_cpu_s'] / x['stored'] * 1e6:.0f}, bare {1e6 / bare:.0f})")
        print("  " + "\n    ".join(line))
    for key in ("collector_export", "collector_pre_encoded"):
        if key in best:
            print(f"  best {key}: {best[key + '_rate']:,.0f} spans/s; best ratio to the bare limit of its round: {best[key]:.0%} (goal >= 50%)")
    if "phoenix" in r:
        p = r["phoenix"]
        print(f"  phoenix {PHOENIX_VERSION}: acked {p['spans_per_s_acked']:,.0f} (before persisting), persisted {p['spans_per_s_stored']:,.0f} "
              f"({p['stored']} / {p['acked'] + p['failed']} spans), startup {p['startup_s']:.1f} s")
        for key in ("collector_export", "collector_pre_encoded"):
            if key + "_rate" in best:
                print(f"  {key} / phoenix persisted: {best[key + '_rate'] / p['spans_per_s_stored']:,.0f}x (goal >= 100x)")
        if "collector_small" in r:
            x = r["collector_small"]
            print(f"  collector on Phoenix's {x['stored']} spans: queryable {x['spans_per_s_stored']:,.0f} spans/s "
                  f"({x['spans_per_s_stored'] / p['spans_per_s_stored']:,.0f}x Phoenix; a run this short is latency-bound)")
    if "queries" in r:
        q = r["queries"]
        print(f"\n== queries on {r['phoenix']['stored']} spans (median ms) ==")
        for label, key in (
            ("all spans of one trace: collector /api/sql", "trace_spans_collector_sql_ms"),
            ("all spans of one trace: collector /api/traces/{id}", "trace_spans_collector_api_ms"),
            ("all spans of one trace: phoenix REST spans?trace_id", "trace_spans_phoenix_rest_ms"),
            ("count by name: collector /api/sql GROUP BY", "count_by_name_collector_sql_ms"),
            ("count by name: phoenix GraphQL recordCount per name", "count_by_name_phoenix_graphql_ms"),
            ("count by name: phoenix REST paginate all spans", "count_by_name_phoenix_rest_paginate_ms"),
        ):
            print(f"  {label:<55} {q[key]:>9.1f}")
        print(f"  spans returned for the trace: collector {q['trace_spans_collector_n']}, phoenix {q['trace_spans_phoenix_n']}")
        print(f"  counts: collector {q['count_by_name_collector']}; phoenix {q['count_by_name_phoenix']}")


if __name__ == "__main__":
    sys.exit(main())
