"""The review of a run's keeps in the pages: `tracekit optimize review`, with a form per keep.

    GET  /ui/runs/<run>/review    the keeps in the order they were decided: diff, rationale, alarms,
                                  metric with its interval, trace digest and link, the latest decision
    POST /ui/runs/<run>/review    experiment_id, decision (approve | reject), why, author, csrf

The page and the form use the CLI's own functions (`optimizer._review`): `review_items` over the
run's `Ledger` rows, `record_decision` (an annotation of the keep, source review, who and why), then
`rebuild_branch`, which reverts a rejected keep on the run's branch (later keeps rebased) and writes
`review.json`. Like the CLI they read the ledger and the annotations in this process.

A running loop refuses the review: the run's lock is checked (without opening a FIFO planted there)
before anything is recorded, and `rebuild_branch` checks it again. A bad form (not a keep of the
run, a rejection without why, no author) is a 400 that stores nothing. Decisions are serialized in
this process, so two reviewers' posts never rebuild the branch at the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .._errors import OptimizerError
from ..optimizer._ledger import Ledger
from ..optimizer._review import DECISIONS, load_chain, rebuild_branch, record_decision, review_items
from ..optimizer._session import loop_pid
from ._notes import author_of, form_fields
from ._optimizer import check_run_id, diff_lines, running
from ._render import page
from ._source import Reader
from ._traces import BadInput

_DECIDING = threading.Lock()


def lock_refusal(home: Path, run_id: str) -> str | None:
    """Why the run cannot be reviewed now (a loop holds its lock, or its lock is not a plain file), else None."""
    run_dir = home / "optimizer" / run_id
    lock = run_dir / "lock"
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        return f"run {run_id!r}'s lock ({lock}) is not a plain file: remove it (no loop made it), then review"
    if running(home, run_id):
        pid = loop_pid(run_dir)
        return (f"a loop is working on run {run_id!r} (pid {pid}); stop it first (`tracekit optimize stop`), "
                "then review: the loop moves the branch itself")
    return None


def _context(home: Path, run_id: str) -> dict[str, Any] | None:
    rows = Ledger(home, run_id).rows
    if not rows:
        return None
    items = [{"item": item, "diff": diff_lines(item.row.get("diff"))} for item in review_items(home, rows)]
    try:
        chain, chain_error = load_chain(home, run_id), ""
    except OptimizerError as exc:
        chain, chain_error = None, str(exc)
    return {"run_id": run_id, "items": items, "chain": chain, "chain_error": chain_error, "refusal": lock_refusal(home, run_id),
            "has_repo": (home / "optimizer" / run_id / "run.json").is_file(), "decisions": DECISIONS}


def routes(app: FastAPI, reader: Callable[[], Reader]) -> None:
    @app.get("/runs/{run_id}/review")
    def review(request: Request, run_id: str) -> HTMLResponse:
        home = request.app.state.source.home
        context = _context(home, check_run_id(run_id))
        if context is None:
            return page(request, "error.html", 404, title="No such run", message=f"no experiments of run {run_id} in this store",
                        hint="A run appears once its first baseline is recorded.")
        return page(request, "review.html", **context)

    @app.post("/runs/{run_id}/review")
    def decide(request: Request, run_id: str) -> Response:
        home: Path = request.app.state.source.home
        form = form_fields(request)
        check_run_id(run_id)
        eid, decision = form.get("experiment_id", "").strip(), form.get("decision", "")
        why = form.get("why", "").replace("\r\n", "\n").strip() or None
        author = author_of(form)
        if decision not in DECISIONS:
            raise BadInput(f"decision {decision[:40]!r}: approve or reject")
        with _DECIDING:
            refusal = lock_refusal(home, run_id)
            if refusal is None and not (home / "optimizer" / run_id / "run.json").is_file():
                refusal = (f"this store has no {home / 'optimizer' / run_id / 'run.json'}: the run's folder (and its git "
                           "repository) is not here; review it where it ran")
            if refusal is not None:
                return page(request, "error.html", 409, title="Not now", message=refusal, hint="Nothing was recorded.")
            rows = Ledger(home, run_id).rows
            keep_ids = {r["experiment_id"] for r in rows if r["status"] == "keep"}
            if eid not in keep_ids:
                raise BadInput(f"{eid[:80]} is not a kept experiment of run {run_id!r} (keeps: {', '.join(sorted(keep_ids)) or 'none'})")
            try:
                record_decision(home, run_id, eid, decision, why=why, author=author)
            except OptimizerError as exc:  # e.g. a rejection without why: nothing was written
                raise BadInput(str(exc)) from None
            try:
                rebuild_branch(home, run_id, rows)
            except (OptimizerError, OSError) as exc:
                return page(request, "error.html", 409, title="Recorded, branch not rebuilt", message=str(exc),
                            hint=f"The decision on {eid} is recorded; the next review of the run rebuilds the branch.")
        return RedirectResponse(f"/ui/runs/{run_id}/review#keep-{eid}", status_code=303)
