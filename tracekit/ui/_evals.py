"""The eval pages: runs, one run's cases (scores, explanations, traces), one case with its annotations,
and two runs compared.

The comparison is `tracekit.evals`' own (`compare_rows`: cases paired by id, regressions, fixes,
the paired delta with its standard error) over rows read through the pages' SQL workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from ..evals._compare import compare_rows
from ..store._tables import EvalResultRow
from ._notes import notes_for
from ._render import page, parse
from ._source import Reader
from ._traces import BadInput

MAX_CASES = 5000  # result rows of one run shown (and compared)

RUNS_SQL = """
WITH ev AS (
    SELECT run_id, any_value(task) AS task, min(time) AS started, max(time) AS last, arg_max(event, time) AS state,
           arg_max(metrics, time) FILTER (WHERE metrics IS NOT NULL) AS metrics, arg_max(experiment_id, time) AS experiment_id
    FROM eval_runs GROUP BY run_id
), res AS (
    SELECT run_id, any_value(task) AS task, min(start_time) AS started, count(DISTINCT case_id) AS cases, count(*) AS results,
           count(*) FILTER (WHERE passed) AS passed, count(*) FILTER (WHERE status <> 'ok') AS errors, avg(score) AS mean_score
    FROM eval_results GROUP BY run_id
)
SELECT coalesce(ev.run_id, res.run_id) AS run_id, coalesce(ev.task, res.task) AS task, coalesce(ev.state, 'results only') AS state,
       coalesce(ev.started, res.started) AS started, coalesce(res.cases, 0) AS cases, coalesce(res.results, 0) AS results,
       coalesce(res.passed, 0) AS passed, coalesce(res.errors, 0) AS errors, res.mean_score,
       TRY_CAST(json_extract(ev.metrics, '$.accuracy') AS DOUBLE) AS accuracy,
       TRY_CAST(json_extract(ev.metrics, '$.accuracy_stderr') AS DOUBLE) AS accuracy_stderr,
       ev.experiment_id
FROM ev FULL OUTER JOIN res ON ev.run_id = res.run_id
ORDER BY started DESC NULLS LAST LIMIT 500
"""


def list_runs(reader: Reader) -> list[dict[str, Any]]:
    return reader.rows(RUNS_SQL)


def case_rows(reader: Reader, run_id: str) -> list[EvalResultRow]:
    rows = reader.rows("SELECT * FROM eval_results WHERE run_id = ? ORDER BY case_id, epoch", [run_id[:200]], limit=MAX_CASES)
    return cast(list[EvalResultRow], rows)  # the view is the table: its columns


def scores_of(row: EvalResultRow) -> list[dict[str, Any]]:
    """Each scorer's value, pass and explanation (from the scores JSON)."""
    value = parse(row.get("scores"))
    if not isinstance(value, dict):
        return []
    out = []
    for name, s in list(value.items())[:20]:
        if isinstance(s, dict):
            out.append({"name": str(name), "value": s.get("value"), "passed": s.get("passed"), "explanation": s.get("explanation")})
        else:
            out.append({"name": str(name), "value": s, "passed": None, "explanation": None})
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def routes(app: FastAPI, reader: Callable[[], Reader]) -> None:
    @app.get("/evals")
    def evals(request: Request) -> HTMLResponse:
        return page(request, "evals.html", runs=list_runs(reader()))

    @app.get("/evals/compare")
    def compare(request: Request, a: str = "", b: str = "") -> HTMLResponse:
        if not a or not b:
            raise BadInput("compare needs two runs: /ui/evals/compare?a=RUN_A&b=RUN_B (pick them on the Evals page)")
        r = reader()
        rows_a, rows_b = case_rows(r, a), case_rows(r, b)
        missing = [x for x, rows in ((a, rows_a), (b, rows_b)) if not rows]
        if missing:
            return page(request, "error.html", 404, title="No such eval run", message=f"no results of eval run {missing[0][:200]} in this store",
                        hint="Pick runs on the Evals page.")
        comp = compare_rows(a, b, rows_a, rows_b)
        z = {m: _finite(comp.z(m)) for m in comp.delta}
        return page(request, "compare.html", c=comp, z=z)

    @app.get("/evals/{run_id}/case")
    def case(request: Request, run_id: str, id: str = "", epoch: str = "1") -> HTMLResponse:
        if not id or not epoch.isdigit() or len(epoch) > 6:
            raise BadInput("a case is /ui/evals/RUN/case?id=CASE_ID&epoch=N (N a whole number; open it from the run's page)")
        r = reader()
        row = r.one("SELECT * FROM eval_results WHERE run_id = ? AND case_id = ? AND epoch = ? LIMIT 1", [run_id[:200], id[:500], int(epoch)])
        if row is None:
            return page(request, "error.html", 404, title="No such case", message=f"no case {id[:200]} (epoch {epoch}) in eval run {run_id[:200]}",
                        hint="Open the case from its run's page.")
        here = f"{request.url.path}?{request.url.query}"
        return page(request, "eval_case.html", run_id=run_id, x={**row, "scorers": scores_of(cast(EvalResultRow, row))},
                    notes=notes_for(r, "eval_case", f"{row['run_id']}/{row['case_id']}/{row['epoch']}", here))

    @app.get("/evals/{run_id}")
    def run(request: Request, run_id: str, failed: str = "") -> HTMLResponse:
        r = reader()
        rows = case_rows(r, run_id)
        events = r.rows("SELECT * FROM eval_runs WHERE run_id = ? ORDER BY time", [run_id[:200]])
        if not rows and not events:
            return page(request, "error.html", 404, title="No such eval run", message=f"no eval run {run_id[:200]} in this store", hint="")
        shown = [{**x, "scorers": scores_of(x)} for x in rows if not failed or not x["passed"]]
        last = events[-1] if events else {}
        metrics = parse(next((e["metrics"] for e in reversed(events) if e.get("metrics")), None))
        passed = sum(1 for x in rows if x["passed"])
        return page(request, "eval_run.html", run_id=run_id, rows=shown, total=len(rows), passed=passed, failed=failed,
                    task=(rows[0]["task"] if rows else last.get("task")), state=last.get("event", "results only"), events=events,
                    metrics=metrics if isinstance(metrics, dict) else {}, cut=len(rows) >= MAX_CASES,
                    experiment_id=last.get("experiment_id") or (rows[0].get("experiment_id") if rows else None))
