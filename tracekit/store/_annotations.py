"""Annotations: a human's label, score or note on a trace, a span, an experiment or an eval case.

    write_annotation(home, "experiment", "main-0003", label="reject", note="prints a fake metric", author="ana")
    SELECT target_id, label, note, author FROM annotations WHERE target_kind = 'experiment'

One append-only table like every other: a later annotation of the same target by the same author
supersedes the earlier one when read as "the latest" (`latest_labels`). Written from the CLI
(`tracekit annotate`), Python (`tracekit.annotate`), `tracekit optimize review` and the UI.
"""

from __future__ import annotations

import datetime as dt
import getpass
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

from .._errors import StoreError
from ._sqltext import sql_literal
from ._store import Store
from ._tables import AnnotationRow

KINDS = ("trace", "span", "experiment", "eval_case")
_ID = {
    "trace": re.compile(r"[0-9a-f]{32}"),
    "span": re.compile(r"[0-9a-f]{32}/[0-9a-f]{16}"),
    "experiment": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
    "eval_case": re.compile(r"[^/\s]{1,200}/[^/]{1,500}/[0-9]{1,6}"),
}
_EXAMPLE = {"trace": "32 hex digits", "span": "<32 hex trace id>/<16 hex span id>", "experiment": "main-0003",
            "eval_case": "<eval run id>/<case id>/<epoch>, e.g. 20261204T101500-ab12cd/t-inv-total/1"}
MAX_LABEL = 200
MAX_NOTE = 64 * 1024


def default_author() -> str:
    return os.environ.get("TRACEKIT_AUTHOR") or getpass.getuser()


def write_annotation(home: str | Path, kind: str, target_id: str, *, label: str | None = None, score: float | None = None,
                     note: str | None = None, author: str | None = None, source: str = "python",
                     trace_id: str | None = None, experiment_id: str | None = None,
                     project: str | None = None) -> AnnotationRow:
    """Validate and store one annotation (durably); returns the row."""
    if kind not in KINDS:
        raise StoreError(f"annotation target kind {kind!r}: use one of {', '.join(KINDS)}")
    target_id = target_id.strip().lower() if kind in ("trace", "span") else target_id.strip()
    if not _ID[kind].fullmatch(target_id):
        raise StoreError(f"{kind} id {target_id[:80]!r} is not one: expected {_EXAMPLE[kind]}")
    if label is None and score is None and not note:
        raise StoreError("an annotation needs a label, a score or a note")
    if label is not None and (not label.strip() or len(label) > MAX_LABEL or "\n" in label):
        raise StoreError(f"label {label[:80]!r}: one line of at most {MAX_LABEL} characters")
    if score is not None and (isinstance(score, bool) or not math.isfinite(float(score))):
        raise StoreError(f"score {score!r}: a finite number")
    if note is not None and len(note) > MAX_NOTE:
        raise StoreError(f"note of {len(note)} characters: at most {MAX_NOTE}")
    if kind == "trace":
        trace_id = target_id
    elif kind == "span":
        trace_id = target_id.split("/")[0]
    elif kind == "experiment":
        experiment_id = target_id
    row: AnnotationRow = {
        "annotation_id": uuid.uuid4().hex, "target_kind": kind, "target_id": target_id, "trace_id": trace_id,
        "experiment_id": experiment_id, "label": label.strip() if label else None,
        "score": float(score) if score is not None else None, "note": note, "author": (author or default_author()).strip()[:200],
        "source": source, "time": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), "project": project,
    }
    Store(home).write("annotations", [dict(row)], durable=True)
    return row


def latest_labels(db: Any, kind: str, target_ids: list[str] | None = None, labels: tuple[str, ...] = ()) -> dict[str, AnnotationRow]:
    """The latest annotation per target of `kind` (optionally only those with one of `labels`), by target id."""
    where = [f"target_kind = {sql_literal(kind)}"]
    if target_ids is not None:
        if not target_ids:
            return {}
        where.append("target_id IN (" + ", ".join(sql_literal(t) for t in target_ids) + ")")
    if labels:
        where.append("label IN (" + ", ".join(sql_literal(label) for label in labels) + ")")
    rel = db.sql(f"SELECT * FROM annotations WHERE {' AND '.join(where)} ORDER BY time")
    out: dict[str, AnnotationRow] = {}
    for r in rel.fetchall():
        row = dict(zip(rel.columns, r))
        out[row["target_id"]] = row  # type: ignore[assignment]  # DuckDB rows are plain dicts
    return out
