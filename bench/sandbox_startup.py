"""Sandbox start-up overhead per backend against a bare subprocess, measured in the same run.

    .venv/bin/python bench/sandbox_startup.py            # 20 runs per row
    .venv/bin/python bench/sandbox_startup.py --quick    # 5 runs per row
    .venv/bin/python bench/sandbox_startup.py --pause 0  # back to back

For two commands (`/bin/true` and `python -c pass`) it times, end to end, a bare
`subprocess.run` and `tracekit.sandbox.run()` with each usable backend (workspace copy, cgroups,
the init process, output capture, metric parsing, the run span and run.json included), and prints
the median, the overhead in milliseconds and the ratio to the bare subprocess. Each backend is
measured cold (`TRACEKIT_SANDBOX_WARM=0`: the launch chain on every run) and warm (the sandbox
started ahead while the previous run finished, sandbox/_warm.py), with `--pause` seconds between
runs (the time a proposer takes between experiments; 0 runs them back to back).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tracekit.sandbox import RunSpec, run
from tracekit.sandbox._backends import probe


def median_s(fn: Callable[[], object], n: int, pause_s: float = 0.0) -> float:
    fn()  # warm-up (probes, imports, page cache; a warm sandbox for the next run)
    times = []
    for _ in range(n):
        time.sleep(pause_s)  # between runs, as between experiments (not timed)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 runs per row instead of 20")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds between runs, untimed (the next warm sandbox starts meanwhile); 0: back to back")
    args = ap.parse_args()
    n = 5 if args.quick else 20
    backends = [b for b in ("bwrap", "unshare", "local") if probe(b) is None]
    commands = {"/bin/true": ["/bin/true"], "python -c pass": [sys.executable, "-c", "pass"]}
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        root = Path(tmp)
        ws = root / "ws"
        ws.mkdir()
        (ws / "train.py").write_text("print('METRIC x=1')\n")
        counter = iter(range(10**9))
        print(f"{'command':16} {'how':14} {'median ms':>10} {'overhead ms':>12} {'ratio':>7}   "
              f"({n} runs each, {args.pause:g} s apart)")
        for label, argv in commands.items():
            bare = median_s(lambda: subprocess.run(argv, stdin=subprocess.DEVNULL, check=True), n, args.pause)
            print(f"{label:16} {'bare':14} {bare * 1e3:10.1f} {'':>12} {'1.00':>7}")
            for backend in backends:
                def one() -> None:
                    res = run(RunSpec(argv, workspace=ws, backend=backend, budget_s=60, otlp=False,
                                      run_dir=root / f"run{next(counter)}", trace_home=root / "home"))
                    assert res.status in ("ok", "no_metric"), res.error

                for how, warm in (("cold", "0"), ("warm", "1")):
                    os.environ["TRACEKIT_SANDBOX_WARM"] = warm
                    t = median_s(one, n, args.pause)
                    print(f"{label:16} {backend + ' ' + how:14} {t * 1e3:10.1f} {(t - bare) * 1e3:12.1f} {t / bare:7.2f}")


if __name__ == "__main__":
    main()
