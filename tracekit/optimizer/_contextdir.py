"""The read-only context folder for agentic proposers: everything in full, on disk.

    <home>/optimizer/<run>/context/
        README.md            what is where
        prompt.md            the rendered prompt (rules + task card + sections), the same text LLMs get
        history.tsv          every experiment: id, status, metric, improvement, rationale, error
        current/<files>      the incumbent's editable files
        experiments/<id>/    per finished experiment: diff.patch, row.json, stdout.txt, stderr.txt,
                             metrics.csv (its metric curves), spans.csv (its spans)

Per-experiment folders are written once (experiments are immutable once decided); the top-level
files are refreshed for every proposal. Files are made read-only (the agent is told not to write
there; it edits its workspace instead).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._query import sql_literal

if TYPE_CHECKING:
    from .._query import Database
    from ._ledger import Ledger

README = """# Context for proposing the next experiment (read-only)

- prompt.md: rules, the human's program, the task card, the current code, history and trace excerpts
- history.tsv: every experiment so far (oldest first), including reverts, crashes and invalid proposals
- current/: the incumbent's editable files (your workspace starts from these)
- experiments/<id>/: diff.patch (vs its parent), row.json (ledger row), stdout.txt / stderr.txt (full logs),
  metrics.csv (metric curves logged during the run), spans.csv (the run's spans: name, kind, duration, status)

Edit only the editable files in your working directory; write a one-paragraph rationale to $TRACEKIT_RATIONALE_FILE.
Do not run the evaluation yourself: tracekit runs it.
"""


def _writable(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o755)
        for n in filenames:
            os.chmod(Path(dirpath) / n, 0o644)


def _read_only(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames:
            os.chmod(Path(dirpath) / n, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(dirpath, 0o555)


def _csv(db: "Database", sql: str) -> str:
    rel = db.sql(sql)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(rel.columns)
    for r in rel.fetchall():
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def _experiment(dest: Path, db: "Database", ledger: "Ledger", row: dict[str, Any]) -> None:
    d = dest / "experiments" / row["experiment_id"]
    if d.exists():
        return
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        _writable(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "diff.patch").write_text(row.get("diff") or "")
    (tmp / "row.json").write_text(json.dumps(row, default=str, indent=1))
    result_path = ledger.exp_dir(row["experiment_id"]) / "result.json"
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text())
        except ValueError:
            result = {}
        for stream in ("stdout", "stderr"):
            src = Path(str((result.get(stream) or {}).get("path", "")))
            if src.is_file():
                shutil.copyfile(src, tmp / f"{stream}.txt")
            else:
                (tmp / f"{stream}.txt").write_text(row.get(f"{stream}_tail") or "")
    if row.get("trace_id"):
        f = f"trace_id = {sql_literal(row['trace_id'])}"
        (tmp / "metrics.csv").write_text(_csv(db, f"SELECT name, step, value, time FROM metrics WHERE {f} ORDER BY name, step, time"))
        (tmp / "spans.csv").write_text(_csv(
            db, "SELECT span_id, parent_span_id, name, kind, start_time, round(duration_ms, 3) AS duration_ms, status, "
                f"status_message FROM spans WHERE {f} ORDER BY start_time"))
    os.replace(tmp, d)


def materialize(dest: Path, db: "Database", ledger: "Ledger", files: dict[str, str], full_prompt: str) -> Path:
    """Write (or refresh) the context folder; returns it."""
    dest.mkdir(parents=True, exist_ok=True)
    _writable(dest)
    (dest / "README.md").write_text(README)
    (dest / "prompt.md").write_text(full_prompt)
    cols = ("experiment_id", "seq", "status", "parent_id", "metric", "improvement", "description", "error")
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(cols)
    for r in ledger.rows:
        w.writerow([" ".join(str(r.get(c) if r.get(c) is not None else "").split()) for c in cols])
    (dest / "history.tsv").write_text(buf.getvalue())
    cur = dest / "current"
    if cur.exists():
        shutil.rmtree(cur)
    for rel, text in files.items():
        (cur / rel).parent.mkdir(parents=True, exist_ok=True)
        (cur / rel).write_text(text)
    for row in ledger.rows:
        _experiment(dest, db, ledger, row)
    _read_only(dest)
    return dest
