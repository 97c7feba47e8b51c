"""Reading and writing eval results: batched appends, run lookup, and the sandbox metric contract.

Rows are appended in small batches (a new Parquet file per batch), so an interrupted run keeps
every batch written before the interruption and a resume redoes at most the last few cases.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from .._errors import EvalError
from ..store import sql_literal
from ..store._store import Store
from ..store._tables import EvalResultRow, EvalRunRow

RESULT_ENV = "TRACEKIT_RESULT"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class ResultWriter:
    """Buffers eval_results rows; writes a file every `every` rows or `interval_s` seconds, and on flush()."""

    def __init__(self, store: Store, *, every: int = 200, interval_s: float = 2.0) -> None:
        self.store = store
        self.every = every
        self.interval_s = interval_s
        self._rows: list[EvalResultRow] = []
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.written = 0

    def add(self, row: EvalResultRow) -> None:
        with self._lock:
            self._rows.append(row)
            due = len(self._rows) >= self.every or time.monotonic() - self._last >= self.interval_s
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            self._last = time.monotonic()
            if rows:
                self.store.write("eval_results", rows, durable=True)
                self.written += len(rows)


def write_run_event(store: Store, row: EvalRunRow) -> None:
    store.write("eval_runs", [row], durable=True)



def _db(home: str | Path | None) -> Any:
    from ..store import Database

    return Database(home)


def resolve_run(ref: str, home: str | Path | None = None) -> str:
    """A full run id from a run id, a unique prefix of one, or `latest`."""
    db = _db(home)
    if ref in ("latest", "last"):
        latest = db.sql("SELECT run_id FROM eval_runs ORDER BY time DESC LIMIT 1").fetchall()
        if not latest:
            raise EvalError("no eval runs in this store yet; start one with: tracekit eval run FILE.py")
        return str(latest[0][0])
    rows = db.sql(
        f"SELECT DISTINCT run_id FROM eval_runs WHERE run_id = {sql_literal(ref)} OR run_id LIKE {sql_literal(ref.replace('%', '') + '%')} "
        "UNION SELECT DISTINCT run_id FROM eval_results WHERE run_id LIKE " + sql_literal(ref.replace('%', '') + '%')
    ).fetchall()
    ids = sorted({str(r[0]) for r in rows})
    if ref in ids:
        return ref
    if not ids:
        raise EvalError(f"no eval run {ref!r}; list runs with: tracekit eval list")
    if len(ids) > 1:
        raise EvalError(f"eval run prefix {ref!r} is ambiguous ({', '.join(ids[:5])}); give more characters")
    return ids[0]


def run_rows(run_id: str, home: str | Path | None = None) -> list[EvalResultRow]:
    """The eval_results rows of a run, one per case and epoch, ordered by case and epoch."""
    rel = _db(home).sql(f"SELECT * FROM eval_results WHERE run_id = {sql_literal(run_id)} ORDER BY case_id, epoch")
    cols = rel.columns
    return [cast(EvalResultRow, dict(zip(cols, r))) for r in rel.fetchall()]  # the view is the table: its columns


def run_events(run_id: str, home: str | Path | None = None) -> list[EvalRunRow]:
    rel = _db(home).sql(f"SELECT * FROM eval_runs WHERE run_id = {sql_literal(run_id)} ORDER BY time")
    cols = rel.columns
    return [cast(EvalRunRow, dict(zip(cols, r))) for r in rel.fetchall()]  # the view is the table: its columns


def list_runs(home: str | Path | None = None, limit: int = 20, task: str | None = None) -> list[dict[str, Any]]:
    """Runs, newest first: id, task, state (last event), started, cases scored, accuracy, score."""
    where = f"WHERE task = {sql_literal(task)}" if task else ""
    sql = f"""
    WITH ev AS (
        SELECT run_id, any_value(task) AS task, min(time) AS started, arg_max(event, time) AS state,
               arg_max(metrics, time) FILTER (WHERE metrics IS NOT NULL) AS metrics,
               arg_max(experiment_id, time) AS experiment_id
        FROM eval_runs {where} GROUP BY run_id
    ), res AS (
        SELECT run_id, count(*) AS rows, count(DISTINCT case_id) AS cases,
               count(*) FILTER (WHERE status <> 'ok') AS errors
        FROM eval_results GROUP BY run_id
    )
    SELECT ev.run_id, ev.task, ev.state, ev.started, coalesce(res.cases, 0) AS cases, coalesce(res.errors, 0) AS errors,
           TRY_CAST(json_extract(ev.metrics, '$.accuracy') AS DOUBLE) AS accuracy,
           TRY_CAST(json_extract(ev.metrics, '$.score') AS DOUBLE) AS score, ev.experiment_id
    FROM ev LEFT JOIN res USING (run_id)
    ORDER BY ev.started DESC LIMIT {int(limit)}
    """
    rel = _db(home).sql(sql)
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def write_metric_contract(metrics: Mapping[str, float], path: str | None = None) -> Path | None:
    """Inside a sandboxed run ($TRACEKIT_RESULT set): merge the run's metrics into that JSON file.

    Metrics already in the file (written by something else in the run) are kept unless the eval
    reports the same name. Non-finite values are left out (a missing metric is never a 0).
    """
    target = path or os.environ.get(RESULT_ENV)
    if not target:
        return None
    p = Path(target)
    doc: dict[str, Any] = {}
    if p.is_file():
        try:
            loaded = json.loads(p.read_text() or "{}")
            if isinstance(loaded, dict):
                doc = loaded
        except ValueError:
            doc = {}
    prior = doc.get("metrics")
    existing = prior if isinstance(prior, dict) else {}
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
    doc["metrics"] = {**existing, **clean}
    tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, p)
    return p


def git_revision(path: Path) -> dict[str, Any] | None:
    """{commit, dirty} of the git repository holding `path`, or None outside one."""
    import subprocess

    folder = path if path.is_dir() else path.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def jsonify(value: Any) -> str | None:
    """JSON text for a result column (None stays null)."""
    if value is None:
        return None
    from .._util.jsonutil import dumps_capped

    return dumps_capped(value, 65536, scrub=False)


def scores_column(scores: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in scores.items()}, ensure_ascii=False, default=str)


