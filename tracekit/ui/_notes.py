"""Annotations on the pages: the list under a trace, an experiment or an eval case, and the form that adds one.

    notes = notes_for(reader, "trace", trace_id, here)     # a page's context: its annotations and the form's fields
    POST /ui/annotations   kind, target_id, label, score, note, author, next, csrf

The form writes through `store._annotations.write_annotation`, the function behind `tracekit.annotate`
and `tracekit annotate` (its checks and messages, one durable row of `annotations`), marked
`source = 'ui'`. It reaches this route only past `PageGuard`'s write checks (`_writes`). A refused
annotation is a 400 page saying what to change; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from .._errors import StoreError
from ..store._annotations import write_annotation
from ._guard import safe_next
from ._source import Reader
from ._traces import BadInput

MAX_LISTED = 200


def notes_for(reader: Reader, kind: str, target_id: str, here: str) -> dict[str, Any]:
    """The annotations of one target, newest first (a trace's include its spans'), and the form's hidden fields."""
    if kind == "trace":
        rows = reader.rows("SELECT * FROM annotations WHERE trace_id = ? AND target_kind IN ('trace', 'span') "
                           "ORDER BY time DESC LIMIT ?", [target_id, MAX_LISTED])
    else:
        rows = reader.rows("SELECT * FROM annotations WHERE target_kind = ? AND target_id = ? ORDER BY time DESC LIMIT ?",
                           [kind, target_id, MAX_LISTED])
    return {"kind": kind, "target": target_id, "next": here, "rows": rows, "max": MAX_LISTED, "spans": []}


def form_fields(request: Request) -> dict[str, str]:
    """The write form's fields, parsed by PageGuard after its checks (never present on a GET)."""
    form = getattr(request.state, "form", None)
    if not isinstance(form, dict):
        raise BadInput("send this form from its page")
    return {str(k): str(v) for k, v in form.items()}


def author_of(form: dict[str, str]) -> str:
    author = " ".join(form.get("author", "").split())
    if not author:
        raise BadInput("say who you are: fill in the author field (it is recorded with what you decide)")
    return author


def routes(app: FastAPI, reader: Callable[[], Reader]) -> None:
    @app.post("/annotations")
    def annotate(request: Request) -> RedirectResponse:
        form = form_fields(request)
        score_text = form.get("score", "").strip()
        try:
            score = float(score_text) if score_text else None
        except ValueError:
            raise BadInput(f"score {score_text[:40]!r}: a number, e.g. 1 or 0.5 (or leave it empty)") from None
        note = form.get("note", "").replace("\r\n", "\n").strip() or None
        kind, target = form.get("kind", ""), form.get("target_id", "")
        if kind == "trace" and form.get("span", "").strip():  # the trace page's form names one of its spans
            kind, target = "span", f"{target.strip()}/{form['span'].strip()}"
        try:
            write_annotation(request.app.state.source.home, kind, target,
                             label=form.get("label", "").strip() or None, score=score, note=note, author=author_of(form), source="ui")
        except StoreError as exc:
            raise BadInput(str(exc)) from None
        return RedirectResponse(safe_next(form.get("next", "")) + "#annotations", status_code=303)
