"""`tracekit optimize review | promote`: a human judges the night's keeps, then ships the approved ones.

    tracekit optimize review examples/tinylm                     # walk the keeps: approve or reject each
    tracekit optimize review examples/tinylm --reject main-0004 --why "prints a fake metric"
    tracekit optimize promote examples/tinylm                    # a branch of your repository, one commit
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.syntax import Syntax
from rich.text import Text

from .._errors import OptimizerError
from ._common import console, say

if TYPE_CHECKING:
    from ..optimizer._review import ReviewItem


def register(app: typer.Typer) -> None:
    """Add the commands to the `optimize` group."""
    app.command("review")(review_cmd)
    app.command("promote")(promote_cmd)


def _resolve(target_dir: Path | None, home: Path | None) -> Path:
    from ..store import default_home

    if home is not None:
        return home.resolve()
    return default_home(target=(target_dir or Path(".")).resolve()).resolve()


def _show(item: "ReviewItem", index: int, total: int) -> None:
    r = item.row
    head = Text(f"\n[{index}/{total}] {r['experiment_id']}  ", style="bold")
    head.append(" ".join(str(r.get("description") or "").split())[:200])
    console.print(head)
    console.print(Text(f"  decision: {item.reason}"))
    console.print(Text(f"  metric:   {item.interval}"))
    for alarm in item.alarms:
        console.print(Text(f"  ALARM     {alarm}", style="bold red"))
    if item.decision is not None:
        d = item.decision
        console.print(Text(f"  reviewed: {d.get('label')} by {d.get('author')}" + (f": {d.get('note')}" if d.get("note") else ""),
                           style="cyan"))
    for line in item.digest:
        console.print(Text(f"  trace:    {line}", style="dim"))
    diff = r.get("diff") or ""
    if diff:
        console.print(Syntax(diff[-6000:], "diff", theme="ansi_dark", background_color="default"))


def review_cmd(
    target_dir: Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="The run (default: the latest).", show_default=False)] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Store folder (default TARGET_DIR/.tracekit).", show_default=False)] = None,
    approve: Annotated[list[str] | None, typer.Option("--approve", help="Approve this keep (repeatable).", show_default=False)] = None,
    reject: Annotated[list[str] | None, typer.Option("--reject", help="Reject this keep (repeatable; needs --why).", show_default=False)] = None,
    why: Annotated[str | None, typer.Option("--why", help="Why (recorded with the decision).", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", envvar="TRACEKIT_AUTHOR", help="Who decides (default: your login name).",
                                            show_default=False)] = None,
    show: Annotated[bool, typer.Option("--list", help="Only show the keeps and their decisions.")] = False,
) -> None:
    """Approve or reject each kept experiment; rejected keeps leave the run's branch.

    Walks the keeps in order (diff, rationale, alarms, trace digest, metric with its interval); later
    keeps are rebased onto what remains. Example: tracekit optimize review examples/tinylm --reject main-0004 --why "prints a fake metric"
    """
    from ..optimizer._ledger import Ledger
    from ..optimizer._report import pick_run
    from ..optimizer._review import rebuild_branch, record_decision, review_items

    h = _resolve(target_dir, home)
    run_id = pick_run(h, tag)
    rows = Ledger(h, run_id).rows
    keep_ids = {r["experiment_id"] for r in rows if r["status"] == "keep"}
    for eid in [*(approve or []), *(reject or [])]:
        if eid not in keep_ids:
            raise OptimizerError(f"{eid} is not a kept experiment of run {run_id!r} (keeps: {', '.join(sorted(keep_ids)) or 'none'})")
    decided = False
    for eid in approve or []:
        record_decision(h, run_id, eid, "approve", why=why, author=by)
        decided = True
    for eid in reject or []:
        record_decision(h, run_id, eid, "reject", why=why, author=by)
        decided = True
    items = review_items(h, rows)
    if not items:
        say(f"run {run_id!r} has no kept experiment to review")
        return
    if not decided and not show:
        if not sys.stdin.isatty():
            for i, item in enumerate(items, 1):
                _show(item, i, len(items))
            say("\nnot a terminal: decide with --approve ID / --reject ID --why TEXT")
            return
        decided = _walk(items, h, run_id, by)
    elif show or not decided:
        for i, item in enumerate(items, 1):
            _show(item, i, len(items))
    if decided:
        chain = rebuild_branch(h, run_id, rows)
        kept = ", ".join(link.experiment_id + (" (rebased: re-measure it with `optimize confirm`)" if link.rebased else "")
                         for link in chain.links) or "none (back to the baseline)"
        say(f"branch tracekit/{run_id} rebuilt: {kept}"
            + (f"; rejected {', '.join(chain.rejected)}" if chain.rejected else "")
            + (f"; dropped {', '.join(chain.dropped)} (its edit no longer applies without a rejected keep)" if chain.dropped else ""))


def _walk(items: "list[ReviewItem]", home: Path, run_id: str, by: str | None) -> bool:
    from ..optimizer._review import record_decision

    decided = False
    for i, item in enumerate(items, 1):
        _show(item, i, len(items))
        while True:
            answer = typer.prompt("approve, reject, skip or quit? [a/r/s/q]", default="s").strip().lower()[:1]
            if answer in ("a", "r", "s", "q"):
                break
        if answer == "q":
            break
        if answer == "a":
            record_decision(home, run_id, item.row["experiment_id"], "approve", author=by)
            decided = True
        elif answer == "r":
            why = typer.prompt("why")
            record_decision(home, run_id, item.row["experiment_id"], "reject", why=why, author=by)
            decided = True
    return decided


def promote_cmd(
    target_dir: Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="The run (default: the latest).", show_default=False)] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Store folder (default TARGET_DIR/.tracekit).", show_default=False)] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Branch to create (default tracekit/<run>-promoted).",
                                               show_default=False)] = None,
    include_unreviewed: Annotated[bool, typer.Option("--include-unreviewed", help="Also ship keeps nobody reviewed.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the branch if it exists.")] = False,
) -> None:
    """Squash the run's approved keeps into one commit on a new branch of your repository.

    Your checkout, index and current branch are not touched. Example: tracekit optimize promote examples/tinylm --branch better-tinylm
    """
    from ..optimizer._promote import promote
    from ..optimizer._report import pick_run

    h = _resolve(target_dir, home)
    run_id = pick_run(h, tag)
    commit, name = promote(h, run_id, branch=branch, include_unreviewed=include_unreviewed, force=force)
    say(f"promoted run {run_id!r}: branch {name} at {commit[:10]} (git show {name})")
