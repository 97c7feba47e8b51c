"""tracekit's own overhead per optimizer experiment, as a fraction of the run budget (goal: < 2% of 60 s).

    .venv/bin/python bench/optimizer_overhead.py                    # 20 experiments of a 1 s candidate
    .venv/bin/python bench/optimizer_overhead.py --experiments 60 --sleep 0.5 --history 200

What counts as overhead: everything in an experiment except the candidate's own run and the
proposer's thinking, i.e. building the context from the store (SQL), validating and committing
the candidate, copying workspaces, starting the sandbox and collecting its output, deciding,
writing the ledger row and results.tsv, and the spans. The baseline, measured in the same process
run: the same candidate command started with plain `subprocess.run` (no sandbox, no tracekit),
which is what the candidate costs by itself. The search proposer is used (its thinking is a few
milliseconds and is subtracted anyway, as `propose_s`). `--history N` first fills the ledger and
spans with N earlier experiments, to see whether overhead grows with the store.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent('''\
    # --- tunable ---
    LR = 0.1
    WIDTH = 8
    DEPTH = 3
    # --- end tunable ---
    import math, os, time
    if os.environ.get("BENCH_TRACED") == "1":  # the candidate's own tracing: a span and 50 loss points
        import tracekit
        with tracekit.span("train", kind="run"):
            for step in range(50):
                tracekit.log_metric("train_loss", 3.0 / (step + 1), step=step)
            time.sleep(float(os.environ["BENCH_SLEEP"]))
    else:
        time.sleep(float(os.environ["BENCH_SLEEP"]))
    loss = (math.log10(LR) + 0.4) ** 2 + ((WIDTH - 32) / 32) ** 2 + (DEPTH - 5) ** 2 / 10 + 1.0
    print(f"val_loss: {loss:.6f}")
''')


def make_target(root: Path, sleep: float, traced: bool) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(SCRIPT)
    (root / "tracekit.toml").write_text(textwrap.dedent(f'''\
        [target]
        editable = ["train.py"]
        run = "python train.py"
        metric = "val_loss"
        budget_s = 60
        [target.env]
        BENCH_SLEEP = "{sleep}"
        BENCH_TRACED = "{int(traced)}"
        [noise]
        baseline_runs = 1
    '''))
    return root


def plain_runs(root: Path, sleep: float, traced: bool, n: int) -> list[float]:
    env = {"BENCH_SLEEP": str(sleep), "BENCH_TRACED": str(int(traced)), "TRACEKIT_HOME": str(root / "plain-home"),
           "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "train.py"], cwd=root, env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--sleep", type=float, default=1.0, help="seconds the candidate sleeps (its 'training')")
    ap.add_argument("--history", type=int, default=0, help="experiments recorded before the measured ones")
    ap.add_argument("--budget", type=float, default=60.0, help="the run budget the overhead is compared to")
    args = ap.parse_args()

    for traced in (False, True):
        measure(args, traced)
    return 0


def measure(args: argparse.Namespace, traced: bool) -> None:
    from tracekit.optimizer import Optimizer, load_target

    tmp = Path(tempfile.mkdtemp(prefix="tk-opt-bench-"))
    try:
        root = make_target(tmp / "target", args.sleep, traced)
        plain = plain_runs(root, args.sleep, traced, 5)
        t_plain = statistics.median(plain)
        if args.history:
            Optimizer(load_target(root, {"env": {"BENCH_SLEEP": "0"}}), run_id="history", iterations=args.history,
                      proposer="search").run()
        s = Optimizer(load_target(root), iterations=args.experiments, proposer="search").run()
        rows = [r for r in s.rows if r["status"] not in ("baseline", "invalid")]
        per = {k: statistics.median([r[k] or 0.0 for r in rows]) for k in
               ("total_s", "run_s", "context_s", "propose_s", "validate_s", "overhead_s")}
        overhead = statistics.median([r["total_s"] - r["propose_s"] - t_plain for r in rows])
        sandbox = per["run_s"] - t_plain
        loop = overhead - sandbox
        what = "traced candidate (a span + 50 metric points)" if traced else "untraced candidate (sleep only)"
        print(f"\n== {what}: {len(rows)} experiments (history before them: {args.history}), candidate sleeps {args.sleep} s")
        print(f"baseline  the candidate run with plain subprocess.run:  {t_plain * 1000:8.1f} ms  (median of {len(plain)}; "
              f"{'its spans written to a local store' if traced else 'no tracekit'})")
        print(f"measured  experiment total (median):                    {per['total_s'] * 1000:8.1f} ms")
        print(f"          proposer thinking (search, subtracted):       {per['propose_s'] * 1000:8.1f} ms")
        print(f"          sandboxed run (run_s):                        {per['run_s'] * 1000:8.1f} ms")
        print(f"overhead  sandbox + span ingest (run_s - plain run):    {sandbox * 1000:8.1f} ms")
        print(f"          loop (context {per['context_s'] * 1000:.0f} ms, validate+commit {per['validate_s'] * 1000:.0f} ms, "
              f"ledger, spans):   {loop * 1000:8.1f} ms")
        print(f"          tracekit overhead per experiment:             {overhead * 1000:8.1f} ms")
        ratio = overhead / args.budget
        print(f"ratio     overhead / {args.budget:g} s budget = {100 * ratio:.2f}%   (goal < 2%: "
              f"{'met' if ratio < 0.02 else 'NOT met'});  experiment / plain run = x{per['total_s'] / t_plain:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
