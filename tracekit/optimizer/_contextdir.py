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
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ..store import sql_literal
from ..store._tables import ExperimentRow
from ._safefs import Dir, UnsafePath, remove_tree

if TYPE_CHECKING:
    from ..store import Database
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


RO_FILE, RO_DIR, RW_DIR = 0o444, 0o555, 0o755


def _replace_non_dir(parent: Dir, name: str) -> None:
    """A link or file where one of our folders belongs (an agent can put one there) is removed, never followed."""
    mode = parent.kind(name)
    if mode is not None and not stat.S_ISDIR(mode):
        parent.remove(name)


def _csv(db: "Database", sql: str) -> str:
    rel = db.sql(sql)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(rel.columns)
    for r in rel.fetchall():
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def _stream_text(ledger: "Ledger", row: ExperimentRow, stream: str) -> bytes:
    """A run's full stdout/stderr log, read without following links; the ledger's tail when it is gone."""
    result_path = ledger.exp_dir(row["experiment_id"]) / "result.json"
    try:
        result = json.loads(result_path.read_text())
        src = Path(str((result.get(stream) or {}).get("path") or ""))
        if src.is_absolute() and src.is_relative_to(ledger.dir):
            with Dir.open(src.parent, anchor=ledger.dir) as d:
                return d.read(src.name)
    except (OSError, ValueError, AttributeError, UnsafePath):
        pass
    tail = row.get("stdout_tail") if stream == "stdout" else row.get("stderr_tail")
    return (tail or "").encode()


def _experiment(exps: Dir, db: "Database", ledger: "Ledger", row: ExperimentRow) -> None:
    """Write experiments/<id>/ once (decided experiments never change), via a temp folder renamed into place."""
    eid = row["experiment_id"]
    mode = exps.kind(eid)
    if mode is not None and stat.S_ISDIR(mode):
        return
    _replace_non_dir(exps, eid)
    tmp = eid + ".tmp"
    exps.remove(tmp)
    with exps.sub(tmp, create=True) as d:
        d.write("diff.patch", row.get("diff") or "", RO_FILE)
        d.write("row.json", json.dumps(row, default=str, indent=1), RO_FILE)
        for stream in ("stdout", "stderr"):
            d.write(f"{stream}.txt", _stream_text(ledger, row, stream), RO_FILE)
        if row.get("trace_id"):
            f = f"trace_id = {sql_literal(row['trace_id'])}"
            d.write("metrics.csv", _csv(db, f"SELECT name, step, value, time FROM metrics WHERE {f} ORDER BY name, step, time"),
                    RO_FILE)
            d.write("spans.csv", _csv(
                db, "SELECT span_id, parent_span_id, name, kind, start_time, round(duration_ms, 3) AS duration_ms, status, "
                    f"status_message FROM spans WHERE {f} ORDER BY start_time"), RO_FILE)
        d.chmod(RO_DIR)
    os.rename(tmp, eid, src_dir_fd=exps.fd, dst_dir_fd=exps.fd)


def materialize(dest: Path, db: "Database", ledger: "Ledger", files: dict[str, str], full_prompt: str) -> Path:
    """Write (or refresh) the context folder; returns it. Nothing is written through a link an agent left in it."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        remove_tree(dest)
    with Dir.open(dest, create=True) as top:
        top.chmod(RW_DIR)
        for name in ("README.md", "prompt.md", "history.tsv"):
            if stat.S_ISDIR(top.kind(name) or 0):
                top.remove(name)  # a folder an agent left where our file goes
        top.write("README.md", README, RO_FILE)
        top.write("prompt.md", full_prompt, RO_FILE)
        cols = ("experiment_id", "seq", "status", "parent_id", "metric", "improvement", "description", "error")
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        w.writerow(cols)
        for r in ledger.rows:
            w.writerow([" ".join(str(r.get(c) if r.get(c) is not None else "").split()) for c in cols])
        top.write("history.tsv", buf.getvalue(), RO_FILE)
        top.remove("current")
        with top.sub("current", create=True) as cur:
            for rel, text in files.items():
                cur.write(rel, text, RO_FILE)
            _read_only_dirs(cur)
        _replace_non_dir(top, "experiments")
        with top.sub("experiments", create=True) as exps:
            exps.chmod(RW_DIR)
            for row in ledger.rows:
                _experiment(exps, db, ledger, row)
            exps.chmod(RO_DIR)
        top.chmod(RO_DIR)
    return dest


def _read_only_dirs(d: Dir) -> None:
    """Mark the folders below `d` (and it) read-only, by fd: a hint to the agent, not a barrier (root ignores it)."""
    for _, _, _, fd in os.fwalk(".", dir_fd=d.fd):
        os.fchmod(fd, RO_DIR)
