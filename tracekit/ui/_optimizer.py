"""The optimizer's pages: runs, a run's chart and table (live while its loop runs), one experiment.

The chart has the semantics of `optimizer._report`'s progress plot, computed here as data for
uPlot (`chart`): baselines, keeps (a red ring on a keep with alarms), worse discards and near
misses (better, but not past the keep threshold) at their metric; crashes, timeouts and invalid proposals (no metric) as markers at the
worse edge, so every experiment is one point; the incumbent as a step line by proposal order; and
the keep-threshold band beyond it, per decision. Decisions are explained with the row's `reason`
(`optimizer._explain.reason_of` for rows written before that column).

A run's page polls while its loop holds the run's lock (`optimizer._session.loop_pid`, a read-only
shared flock): every few seconds it asks whether the ledger gained rows (204 when not) and swaps in
the new table when it did; the chart redraws from `chart.json` (htmx drops the script elements of
what it swaps in, the chart's JSON block included); 286 stops the polling once the loop is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, cast

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ..optimizer._explain import reason_of, short_reason
from ..optimizer._session import RUN_ID, loop_pid
from ..store._tables import EXPERIMENTS, ExperimentRow
from ._notes import notes_for
from ._render import page
from ._source import Reader
from ._traces import BadInput

LIGHT = ", ".join(c.name for c in EXPERIMENTS.columns if c.name not in ("prompt", "raw_output", "diff", "stdout_tail", "stderr_tail"))
POLL_S = 3
MAX_DIFF_LINES = 5000
MAX_POINTS = 20_000  # metric points drawn on an experiment page


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise BadInput(f"run id {run_id[:80]!r}: use letters, digits, '.', '_' or '-' (as `tracekit optimize --tag`)")
    return run_id


def running(home: Path, run_id: str) -> bool:
    """Whether a loop holds the run's lock now (never true for a run id that is not a plain name, or a
    lock that is not a plain file: opening a FIFO planted there would block the page)."""
    import os
    import stat

    if not RUN_ID.match(run_id):
        return False
    run_dir = home / "optimizer" / run_id
    try:
        if not stat.S_ISREG(os.lstat(run_dir / "lock").st_mode):
            return False
    except OSError:
        return False
    return loop_pid(run_dir) is not None


def list_runs(reader: Reader) -> list[dict[str, Any]]:
    return reader.rows("""
        SELECT run_id, any_value(project) AS project, any_value(metric_name) AS metric_name, any_value(direction) AS direction,
               count(*) FILTER (WHERE proposer IS DISTINCT FROM 'baseline') AS experiments,
               count(*) FILTER (WHERE proposer = 'baseline') AS baselines,
               count(*) FILTER (WHERE status = 'keep') AS kept, count(*) FILTER (WHERE status = 'discard') AS discarded,
               count(*) FILTER (WHERE status IN ('crash', 'timeout')) AS failed, count(*) FILTER (WHERE status = 'invalid') AS invalid,
               avg(metric) FILTER (WHERE status = 'baseline') AS baseline,
               CASE WHEN any_value(direction) = 'max' THEN max(metric) FILTER (WHERE status IN ('baseline', 'keep'))
                    ELSE min(metric) FILTER (WHERE status IN ('baseline', 'keep')) END AS best,
               sum(cost_usd) AS cost_usd, min(started_at) AS started, max(finished_at) AS finished
        FROM experiments GROUP BY run_id ORDER BY max(finished_at) DESC NULLS LAST LIMIT 500""")


def run_rows(reader: Reader, run_id: str) -> list[ExperimentRow]:
    rows = reader.rows(f"SELECT {LIGHT} FROM experiments WHERE run_id = ? ORDER BY seq", [check_run_id(run_id)])
    seen: dict[int, Any] = {}
    for r in rows:
        seen.setdefault(int(r["seq"]), r)  # as the ledger reads it: the first outcome of a seq
    return [seen[k] for k in sorted(seen)]


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "min" else a > b


def chart(rows: list[ExperimentRow]) -> dict[str, Any]:
    """The progress plot's series for uPlot: x = seq, one y array per kind (null where another kind)."""
    direction = next((d for r in rows if (d := r.get("direction"))), "min")
    xs = [int(r["seq"]) for r in rows]
    names = ("baseline", "keep", "worse", "near", "failed", "invalid", "incumbent", "band_lo", "band_hi", "alarm")
    s: dict[str, list[float | None]] = {k: [None] * len(rows) for k in names}
    measured = [m for r in rows if (m := r.get("metric")) is not None and r["status"] in ("baseline", "keep", "discard")]
    lo, hi = (min(measured), max(measured)) if measured else (0.0, 1.0)
    pad = 0.05 * ((hi - lo) or 1.0)
    edge = hi + pad if direction == "min" else lo - pad  # the worse side: where runs without a metric sit
    base = [r for r in rows if r["status"] == "baseline" and r.get("metric") is not None]
    steps: list[tuple[int, float]] = []  # (seq, incumbent from that seq on), as _report's step line
    if base:
        steps.append((min(int(r["seq"]) for r in base), sum(float(r["metric"] or 0.0) for r in base) / len(base)))
        for r in sorted((r for r in rows if r["status"] == "keep" and r.get("metric") is not None), key=lambda r: r["seq"]):
            m = float(r["metric"] or 0.0)
            steps.append((int(r["seq"]), m if _better(m, steps[-1][1], direction) else steps[-1][1]))
    band: tuple[float, float] | None = None
    for i, r in enumerate(rows):
        seq, status, metric = int(r["seq"]), r["status"], r.get("metric")
        if status in ("baseline", "keep") and metric is not None:
            s[status][i] = metric
            if status == "keep" and r.get("alarms"):
                s["alarm"][i] = metric  # ringed in red, as the progress plot rings an alarmed keep
        elif status == "discard" and metric is not None:
            s["near" if (r.get("improvement") or 0) > 0 else "worse"][i] = metric
        elif status == "invalid":
            s["invalid"][i] = edge
        else:  # crash, timeout, or a run that reported no metric
            s["failed"][i] = edge
        current = [y for x, y in steps if x <= seq]
        s["incumbent"][i] = current[-1] if current else None
        thr = r.get("threshold")
        if thr is not None and status in ("keep", "discard") and steps:
            before = [y for x, y in steps if x < seq]
            inc = before[-1] if before else steps[0][1]
            far = inc - thr if direction == "min" else inc + thr
            band = (min(inc, far), max(inc, far))
        if band is not None:
            s["band_lo"][i], s["band_hi"][i] = band
    ids = [r["experiment_id"] for r in rows]
    labels = [f"{r['experiment_id']} {r['status']}{' ALARM' if r['status'] == 'keep' and r.get('alarms') else ''}: "
              f"{short_reason(r) or reason_of(r)} | {' '.join(str(r.get('description') or '').split())[:200]}" for r in rows]
    points = sum(1 for k in ("baseline", "keep", "worse", "near", "failed", "invalid") for v in s[k] if v is not None)
    return {"x": xs, "series": s, "ids": ids, "labels": labels, "direction": direction, "points": points,
            "metric": next((name for r in rows if (name := r.get("metric_name"))), "metric")}


def diff_lines(diff: str | None) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff: meta, hunk, add, del or ctx."""
    out: list[tuple[str, str]] = []
    lines = (diff or "").splitlines()
    for line in lines[:MAX_DIFF_LINES]:
        if line.startswith(("diff --git", "index ", "+++ ", "--- ", "new file", "deleted file", "similarity", "rename ")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line or " "))
    if len(lines) > MAX_DIFF_LINES:
        out.append(("meta", f"... {len(lines) - MAX_DIFF_LINES} more lines (the diff column in SQL has them all)"))
    return out


def metric_curves(reader: Reader, experiment_id: str) -> list[dict[str, Any]]:
    """Per metric name: its points (step, or order when no step) from the `metrics` view."""
    rows = reader.rows("SELECT name, step, value FROM metrics WHERE experiment_id = ? AND value IS NOT NULL AND isfinite(value) "
                       "ORDER BY name, step NULLS LAST, time", [experiment_id], limit=MAX_POINTS)
    curves: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = curves.setdefault(str(r["name"]), {"name": str(r["name"]), "x": [], "y": []})
        c["x"].append(r["step"] if r["step"] is not None else len(c["x"]))
        c["y"].append(r["value"])
    return list(curves.values())[:12]


def routes(app: FastAPI, reader: Callable[[], Reader]) -> None:
    @app.get("/runs")
    def runs(request: Request) -> HTMLResponse:
        home = _home(request)
        found = list_runs(reader())
        for r in found:
            r["live"] = running(home, str(r["run_id"])) if home else False
        return page(request, "runs.html", runs=found)

    @app.get("/runs/{run_id}")
    def run(request: Request, run_id: str) -> HTMLResponse:
        rows = run_rows(reader(), run_id)
        if not rows:
            return page(request, "error.html", 404, title="No such run", message=f"no experiments of run {run_id} in this store",
                        hint="A run appears once its first baseline is recorded.")
        return page(request, "run.html", **_run_context(request, run_id, rows))

    @app.get("/runs/{run_id}/live")
    def live(request: Request, run_id: str, n: int = 0) -> Response:
        rows = run_rows(reader(), run_id)
        context = _run_context(request, run_id, rows)
        if len(rows) == n:
            return Response(status_code=204 if context["live"] else 286)  # 286: htmx stops polling
        return page(request, "_run_body.html", **context)

    @app.get("/runs/{run_id}/chart.json")
    def chart_json(request: Request, run_id: str) -> Response:
        from ..collector._frames import json_text

        return Response(json_text(chart(run_rows(reader(), run_id))), media_type="application/json")

    @app.get("/experiments/{experiment_id}")
    def experiment(request: Request, experiment_id: str) -> HTMLResponse:
        r = reader()
        row = r.one("SELECT * FROM experiments WHERE experiment_id = ? ORDER BY finished_at LIMIT 1", [experiment_id[:200]])
        if row is None:
            return page(request, "error.html", 404, title="No such experiment", message=f"no experiment {experiment_id[:200]} in this store", hint="")
        around = r.rows("SELECT experiment_id, seq FROM experiments WHERE run_id = ? AND seq IN (?, ?) ORDER BY seq",
                        [row["run_id"], row["seq"] - 1, row["seq"] + 1])
        prev = next((a["experiment_id"] for a in around if a["seq"] == row["seq"] - 1), None)
        nxt = next((a["experiment_id"] for a in around if a["seq"] == row["seq"] + 1), None)
        return page(request, "experiment.html", e=row, reason=reason_of(cast(ExperimentRow, row)), diff=diff_lines(row.get("diff")),
                    curves=metric_curves(r, row["experiment_id"]), prev=prev, next=nxt,
                    notes=notes_for(r, "experiment", row["experiment_id"], request.url.path))


def _home(request: Request) -> Path | None:
    source = getattr(request.app.state, "source", None)
    return source.home if source is not None else None


def _run_context(request: Request, run_id: str, rows: list[ExperimentRow]) -> dict[str, Any]:
    home = _home(request)
    shown = [{**r, "why": short_reason(r), "reason": reason_of(r)} for r in rows]  # the decision in a few words, and in full
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    base = [m for r in rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
    return {"run_id": run_id, "rows": shown, "chart": chart(rows) if rows else None, "counts": counts,
            "live": running(home, run_id) if home else False, "poll_s": POLL_S,
            "baseline": sum(base) / len(base) if base else None,
            "experiments": sum(1 for r in rows if r.get("proposer") != "baseline"),
            "alarmed": sum(1 for r in rows if r["status"] == "keep" and r.get("alarms")),
            "cost": sum(r.get("cost_usd") or 0.0 for r in rows)}
