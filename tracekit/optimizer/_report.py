"""Reading a run back: status, a markdown summary and the progress plot (like autoresearch's progress.png).

Rationales and errors are a proposer's and a run's text: the summary holds them on one line each
with control characters made visible (it is printed to terminals and opened by humans), and the plot
draws them with math parsing off (a `$` in a rationale is not TeX to render, or to fail on).

    rows = ledger_rows(home, "main")
    print(summary_markdown(rows))
    plot_progress(rows, Path("progress.png"))      # needs matplotlib (the `plot` extra)
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import OptimizerError
from .._util.termtext import clean
from ..store._tables import ExperimentRow
from ._explain import reason_of
from ._ledger import keeps_in_order
from ._safefs import write_file

DECISIONS_SHOWN = 50


def runs(home: Path) -> list[dict[str, Any]]:
    """Every run recorded under `home` (its run.json), oldest first."""
    out = []
    for p in sorted((Path(home) / "optimizer").glob("*/run.json")):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue
    return sorted(out, key=lambda m: m.get("created_at", ""))


def pick_run(home: Path, run_id: str | None) -> str:
    found = runs(home)
    if run_id:
        if not any(m["run_id"] == run_id for m in found):
            names = ", ".join(m["run_id"] for m in found) or "none"
            raise OptimizerError(f"no run {run_id!r} under {home} (runs: {names})")
        return run_id
    if not found:
        raise OptimizerError(f"no optimization run under {home}; start one with: tracekit optimize TARGET_DIR")
    return str(found[-1]["run_id"])


def ledger_rows(home: Path, run_id: str) -> list[ExperimentRow]:
    from ._ledger import Ledger

    return Ledger(home, run_id).rows


def best_row(rows: list[ExperimentRow]) -> ExperimentRow | None:
    """The incumbent: the last keep decided (each keep beat the one before), else the last baseline."""
    keeps = keeps_in_order(rows)
    base = [r for r in rows if r["status"] == "baseline" and r.get("metric") is not None]
    return keeps[-1] if keeps else (base[-1] if base else None)


def counts(rows: list[ExperimentRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def summary_markdown(rows: list[ExperimentRow], run_id: str = "", pending: int = 0) -> str:
    if not rows:
        return f"# Run {run_id}\n\nNo experiments recorded yet.\n"
    metric = rows[0].get("metric_name") or "metric"
    direction = rows[0].get("direction") or "min"
    base = [m for r in rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
    base_mean = sum(base) / len(base) if base else None
    best = best_row(rows)
    c = counts(rows)
    cost = sum(r.get("cost_usd") or 0.0 for r in rows)
    run_s = sum(r.get("run_s") or 0.0 for r in rows)
    overhead = [o / t for r in rows if (t := r.get("total_s")) and (o := r.get("overhead_s")) is not None
                and r["status"] != "invalid"]
    n_keep = c.get("keep", 0)
    n_exp, n_base = experiment_counts(rows)
    lines = [f"# Run {run_id}: {n_exp} experiments (+{n_base} baseline runs), {n_keep} kept improvement"
             f"{'' if n_keep == 1 else 's'}", ""]
    lines.append(f"- metric: {metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    if base_mean is not None:
        noise = rows[-1].get("noise")
        lines.append(f"- baseline: {base_mean:.6g} over {len(base)} runs" + (f" (noise stdev {noise:.3g})" if noise else ""))
    best_metric = best.get("metric") if best is not None else None
    if best is not None and best_metric is not None:
        rel = ""
        if base_mean:
            rel = f", {100 * (best_metric - base_mean) / abs(base_mean):+.2f}% vs baseline"
        lines.append(f"- best: {best_metric:.6g} ({best['experiment_id']}, commit {str(best.get('candidate_commit'))[:10]}{rel})")
    lines.append("- statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items())) + (f", {pending} in flight" if pending else ""))
    lines.append(f"- proposer cost: ${cost:.4f}; run time {run_s / 60:.1f} min"
                 + (f"; tracekit overhead {100 * sum(overhead) / len(overhead):.2f}% of experiment time" if overhead else ""))
    keeps = [r for r in rows if r["status"] == "keep"]
    if keeps:
        lines += ["", "## Kept improvements", "", f"| id | {metric} | improvement | change |", "|---|---|---|---|"]
        for r in keeps:
            lines.append(f"| {r['experiment_id']} | {_g(r.get('metric'))} | {r.get('improvement') or 0:+.4g} | "
                         f"{_one_line(r.get('description')).replace('|', '/')[:120]} |")
    alarmed = [r for r in rows if r.get("alarms")]
    if alarmed:
        lines += ["", "## Alarms: keeps to review first (`tracekit optimize review`)", ""]
        for r in alarmed:
            lines.append(f"- {r['experiment_id']} {_one_line(r.get('description'))[:100]}:")
            lines += [f"  - {_one_line(a)[:300]}" for a in r.get("alarms") or []]
    decided = [r for r in rows if r.get("proposer") != "baseline"]
    if decided:
        lines += ["", "## Every decision, and why" + (f" (the last {DECISIONS_SHOWN})" if len(decided) > DECISIONS_SHOWN else ""), ""]
        for r in decided[-DECISIONS_SHOWN:]:
            lines.append(f"- {r['experiment_id']} {_one_line(r.get('description'))[:100]}: {_one_line(reason_of(r))}")
    return clean("\n".join(lines) + "\n", tabs=False)


def experiment_counts(rows: list[ExperimentRow]) -> tuple[int, int]:
    """(experiments, baseline runs): the numbers the CLI, the summary and the plot all use."""
    base = sum(1 for r in rows if r.get("proposer") == "baseline")
    return len(rows) - base, base


def _g(value: float | None) -> str:
    return f"{value:.6g}" if value is not None else "?"


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


class _Point(NamedTuple):
    """A measured experiment on the plot."""

    seq: int
    metric: float
    status: str
    description: str


def plot_progress(rows: list[ExperimentRow], out: Path, title: str = "") -> Path:
    """Metric per experiment (discarded grey, kept green, failures marked at the bottom), running best as a step line,
    the keep threshold as a band beyond it; written to `out` as PNG."""
    import matplotlib.pyplot as plt

    fig = progress_figure(rows, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_file(out, buf.getvalue())  # never through a link left at that name
    return out


def progress_figure(rows: list[ExperimentRow], title: str = "") -> Any:
    """The progress plot as a matplotlib Figure (see `plot_progress`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OptimizerError("the progress plot needs matplotlib: pip install 'tracekit-loop[plot]'") from exc
    measured = [_Point(r["seq"], m, r["status"], r.get("description") or "") for r in rows
                if (m := r.get("metric")) is not None and r["status"] in ("baseline", "keep", "discard")]
    if not measured:
        raise OptimizerError("no measured experiment yet; nothing to plot")
    direction = rows[0].get("direction") or "min"
    metric = rows[0].get("metric_name") or "metric"
    fig, ax = plt.subplots(figsize=(12, 6), dpi=120)
    by_seq = {r["seq"]: r for r in rows}
    near = [r for r in measured if r.status == "discard" and (by_seq[r.seq].get("improvement") or 0) > 0]
    disc = [r for r in measured if r.status == "discard" and r not in near]
    ax.scatter([r.seq for r in disc], [r.metric for r in disc], s=18, color="#bbbbbb", label="discarded: worse", zorder=2)
    ax.scatter([r.seq for r in near], [r.metric for r in near], s=26, facecolors="none", edgecolors="#ff7f0e",
               label="discarded: better, but not by more than the keep threshold", zorder=3)
    kept = [r for r in measured if r.status in ("baseline", "keep")]
    base_runs = [r for r in kept if r.status == "baseline"]
    keep_runs = [r for r in kept if r.status == "keep"]
    ax.scatter([r.seq for r in base_runs], [r.metric for r in base_runs], s=30, color="#1f77b4", label="baseline runs",
               zorder=3)
    ax.scatter([r.seq for r in keep_runs], [r.metric for r in keep_runs], s=40, color="#2ca02c", label="kept", zorder=3)
    alarmed = [r for r in keep_runs if by_seq[r.seq].get("alarms")]
    if alarmed:
        ax.scatter([r.seq for r in alarmed], [r.metric for r in alarmed], s=160, facecolors="none", edgecolors="#d62728",
                   linewidths=1.5, label="kept, with alarms: review them", zorder=4)
    base = [r for r in kept if r.status == "baseline"]
    best_x = [min(r.seq for r in base)] if base else []
    best_y = [sum(r.metric for r in base) / len(base)] if base else []
    for r in sorted((r for r in kept if r.status == "keep"), key=lambda r: r.seq):
        better = not best_y or (r.metric < best_y[-1] if direction == "min" else r.metric > best_y[-1])
        best_x.append(r.seq)
        best_y.append(r.metric if better else best_y[-1])  # the running best by proposal order
    last_seq = max(r["seq"] for r in rows)
    if best_x:
        ax.step(best_x + [last_seq], best_y + [best_y[-1]], where="post", color="#2ca02c", alpha=0.6, label="incumbent")
        _threshold_band(ax, rows, best_x, best_y, last_seq, direction)
    for r in kept:
        if r.status == "keep":
            label = re.sub(r"\s*\([^)]*\)\s*$", "", r.description)[:64]
            ax.annotate(clean(_one_line(label)), (r.seq, r.metric), textcoords="offset points",
                        xytext=(4, 6), fontsize=7, color="#1f6f1f", rotation=20, parse_math=False)
    fails = [r for r in rows if r["status"] in ("crash", "timeout")]
    if fails:
        lo = min(r.metric for r in measured)
        hi = max(r.metric for r in measured)
        y = hi + 0.05 * (hi - lo or 1.0) if direction == "min" else lo - 0.05 * (hi - lo or 1.0)
        ax.scatter([r["seq"] for r in fails], [y] * len(fails), marker="x", color="#d62728", label="crash / timeout", zorder=3)
    n_keep = sum(1 for r in rows if r["status"] == "keep")
    n_exp, n_base = experiment_counts(rows)
    ax.set_title(title or f"{n_exp} experiments (+{n_base} baseline runs), {n_keep} kept improvement{'' if n_keep == 1 else 's'}")
    ax.set_xlabel("experiment")
    ax.set_ylabel(clean(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)"), parse_math=False)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _threshold_band(ax: Any, rows: list[ExperimentRow], best_x: list[int], best_y: list[float], last_seq: int,
                    direction: str) -> None:
    """Shade how far past the incumbent a candidate had to land to be kept (the keep threshold), per decision."""
    xs: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for r in sorted(rows, key=lambda r: r["seq"]):
        thr = r.get("threshold")
        if thr is None or r["status"] not in ("keep", "discard"):
            continue
        inc = next((y for x, y in zip(reversed(best_x), reversed(best_y)) if x < r["seq"]), best_y[0])
        edge = inc - thr if direction == "min" else inc + thr
        xs.append(r["seq"] - 0.5)
        lo.append(min(inc, edge))
        hi.append(max(inc, edge))
    if xs:
        xs.append(last_seq + 0.5)
        lo.append(lo[-1])
        hi.append(hi[-1])
        ax.fill_between(xs, lo, hi, step="post", color="#2ca02c", alpha=0.12, linewidth=0,
                        label="keep threshold: a keep must land beyond this band")
