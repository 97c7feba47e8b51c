"""Memory of big SQL answers: the collector before and after issue 10, measured in the same run.

    .venv/bin/python bench/sql_memory.py                     # 100k spans (a ~270 MB JSON answer), 1 and 4 at once
    .venv/bin/python bench/sql_memory.py --rows 40000 --concurrency 1
    .venv/bin/python bench/sql_memory.py --baseline-ref HEAD~5   # compare with another commit

For each version (the baseline commit, exported with `git archive`, and this working tree) and
each concurrency, it starts `tracekit serve` on one store, asks `SELECT * FROM spans` that many
times at once over HTTP (JSON, reading every byte), and prints in MiB: the collector process's
RSS before, its peak (VmHWM) and its RSS two seconds after; the peak and after of the whole
process tree (collector plus SQL workers, sampled every 50 ms); the answer size and the time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "6d5edae"  # the last commit before the collector's issue-10 work


def vm(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) in MiB; (0, 0) for a process that is gone or a zombie."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) >> 10, int(fields["VmRSS"].split()[0]) >> 10
    except (OSError, KeyError):
        return 0, 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def tree_rss(pid: int) -> int:
    return vm(pid)[1] + sum(vm(c)[1] for c in children(pid))


def build_store(home: Path, rows: int) -> None:
    from tracekit.store._store import Store

    store = Store(home)
    for f in range(0, rows, 10_000):
        store.write("spans", [{"trace_id": f"{f:016x}{i:016x}", "span_id": f"{i:016x}", "name": "s", "kind": "span",
                               "start_time": 1_700_000_000_000_000 + i, "end_time": 1_700_000_000_000_100 + i,
                               "duration_ms": 0.1, "status": "ok", "input": json.dumps("x" * 2400 + str(i))}
                              for i in range(f, min(f + 10_000, rows))])


def serve(tree: Path, home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(PYTHONPATH=str(tree), TRACEKIT_SQL_QUEUE_TIMEOUT="600", TRACEKIT_SQL_TIMEOUT="600")
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tracekit", "serve", "--home", str(home), "--port", "0"],
                            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tree)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"collector on (http://\S+) ", log.read_text())
        if m:
            url = m.group(1)
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"tracekit serve did not start from {tree}:\n{log.read_text()}")


def measure(tree: Path, home: Path, rows: int, concurrency: int, log: Path) -> dict[str, float]:
    proc, url = serve(tree, home, log)
    try:
        httpx.post(url + "/api/sql", json={"sql": "SELECT 1"}, timeout=60)  # warm: a worker exists (new), views built
        time.sleep(0.5)
        before = vm(proc.pid)[1]
        tree_before = tree_rss(proc.pid)
        sizes: list[int] = []

        def ask() -> None:
            with httpx.stream("POST", url + "/api/sql", json={"sql": "SELECT * FROM spans", "limit": rows}, timeout=900) as r:
                sizes.append(sum(len(c) for c in r.iter_bytes()) if r.status_code == 200 else -r.status_code)

        threads = [threading.Thread(target=ask) for _ in range(concurrency)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        tree_peak = tree_before
        while any(t.is_alive() for t in threads):
            tree_peak = max(tree_peak, tree_rss(proc.pid))
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        time.sleep(2)
        peak, after = vm(proc.pid)
        return {"before": before, "peak": peak, "after": after, "tree_before": tree_before, "tree_peak": tree_peak,
                "tree_after": tree_rss(proc.pid), "answer_mb": min(sizes) / (1 << 20), "seconds": elapsed}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="spans in the store (~2.7 KB of JSON each)")
    ap.add_argument("--concurrency", default="1,4", help="answers asked at once, comma-separated")
    ap.add_argument("--baseline-ref", default=BASELINE, help="the commit measured as 'old'")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        root = Path(tmp)
        build_store(root / "home", args.rows)
        trees = {"new": ROOT}
        if not args.skip_baseline:
            old = root / "old"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_ref], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees = {f"old ({args.baseline_ref})": old, "new": ROOT}
        print(f"{args.rows} spans; MiB; collector = the serve process, tree = collector + SQL workers")
        print(f"{'version':16} {'at once':>7} {'answer':>7} {'s':>6} | {'collector before':>16} {'peak':>6} {'after':>6} "
              f"| {'tree before':>11} {'peak':>6} {'after':>6}")
        for conc in [int(c) for c in args.concurrency.split(",")]:
            for label, tree in trees.items():
                r = measure(tree, root / "home", args.rows, conc, root / f"serve-{conc}-{label[:3]}.log")
                print(f"{label:16} {conc:7d} {r['answer_mb']:7.0f} {r['seconds']:6.1f} | {r['before']:16.0f} {r['peak']:6.0f} "
                      f"{r['after']:6.0f} | {r['tree_before']:11.0f} {r['tree_peak']:6.0f} {r['tree_after']:6.0f}", flush=True)


if __name__ == "__main__":
    main()
