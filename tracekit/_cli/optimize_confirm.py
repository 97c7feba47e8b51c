"""`tracekit optimize confirm` and `tracekit optimize holdout`: the morning-after reruns of a run's best candidate.

    tracekit optimize confirm examples/tinylm --runs 5          # baseline vs best, fresh seeds, 95% interval
    tracekit optimize holdout examples/agent-harness            # the sealed split: overfitting alarm

Both use the run's pre-registered settings (no flags to repeat), take the run's lock (refused while
a loop runs it) and store `<run>/confirm-*.json` / `<run>/holdout-*.json` and an annotation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .._util.termtext import json_text
from ._common import FormatOption, emit, say
from .optimize import HomeOpt, TagOpt, _resolve
from .optimize import app as optimize_app


def register(root: typer.Typer) -> None:
    """Add `confirm` and `holdout` to the `optimize` group (registered on `root` by tracekit._cli.optimize)."""
    optimize_app.command("confirm")(confirm_cmd)
    optimize_app.command("holdout")(holdout_cmd)


TargetArg = Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", help="Experiment to rerun (default: the best after review).",
                                                   show_default=False)]
BackendOpt = Annotated[str, typer.Option("--backend", help="Sandbox backend: auto | bwrap | unshare | local.")]
FormatOpt = Annotated[str, FormatOption("text", "json")]


def _setup(target_dir: Path | None, tag: str | None, home: Path | None) -> tuple[Any, Path, str]:
    from ..optimizer._report import pick_run
    from ..optimizer._rerun import target_for_run

    folder = (target_dir or Path(".")).resolve()
    h = _resolve(folder, home)
    run_id = pick_run(h, tag)
    return target_for_run(folder, h, run_id), h, run_id


def _progress(kind: str, data: dict[str, Any]) -> None:
    value = data.get("value")
    shown = f"{value:.6g}" if isinstance(value, float) else str(data.get("status"))
    say(f"  run {data['index']}: {data['arm']:<9} seed {data['seed']:<10} {shown} ({data['wall_s']:.1f} s)")


def confirm_cmd(
    target_dir: TargetArg = None,
    tag: TagOpt = None,
    home: HomeOpt = None,
    runs: Annotated[int, typer.Option("--runs", "-n", help="Reruns of the candidate and of the baseline, each.")] = 5,
    experiment: ExperimentOpt = None,
    backend: BackendOpt = "auto",
    fmt: FormatOpt = "text",
) -> None:
    """Rerun the best candidate (after review) and the baseline N times each on fresh seeds; the improvement with a 95% interval.

    Example: tracekit optimize confirm examples/tinylm --runs 5
    """
    from ..optimizer._confirm import RULE, confirm, summary

    result = _rerun(confirm, target_dir, tag, home, runs, experiment, backend, fmt,
                    "confirm run {run}: {runs} reruns each of the baseline and the candidate, fresh seeds, interleaved")
    if result is None:
        return
    say(summary(result))
    say(f"rule: {RULE} ({result['min_delta']:g})\nwrote {result['path']}; annotation '{result['label']}' on "
        f"{result['candidate']}; trace {result['trace_id']}")


def _rerun(action: Any, target_dir: Path | None, tag: str | None, home: Path | None, runs: int, experiment: str | None,
           backend: str, fmt: str, title: str) -> dict[str, Any] | None:
    """Run confirm or holdout with progress lines; the result, or None once printed as JSON."""
    target, h, run_id = _setup(target_dir, tag, home)
    if fmt != "json":
        say(title.format(run=run_id, runs=runs))
    result: dict[str, Any] = action(target, h, run_id, runs=runs, experiment=experiment, backend=backend,
                                    on_event=None if fmt == "json" else _progress)
    if fmt == "json":
        emit(json_text(result, default=str))
        return None
    return result


def holdout_cmd(
    target_dir: TargetArg = None,
    tag: TagOpt = None,
    home: HomeOpt = None,
    runs: Annotated[int, typer.Option("--runs", "-n", help="Runs of the sealed split per arm (baseline, candidate).")] = 1,
    experiment: ExperimentOpt = None,
    backend: BackendOpt = "auto",
    fmt: FormatOpt = "text",
) -> None:
    """Score the sealed split (the holdout section of tracekit.toml) for the baseline and the best candidate; overfitting alarm.

    Example: tracekit optimize holdout examples/agent-harness
    """
    from ..optimizer._holdout import RULE, holdout, report

    result = _rerun(holdout, target_dir, tag, home, runs, experiment, backend, fmt,
                    "holdout of run {run}: the sealed split, {runs} run(s) each of the baseline and the candidate")
    if result is None:
        return
    say(report(result))
    say(f"rule: {RULE}\nwrote {result['path']}; annotation '{'overfitting' if result['alarm'] else 'holdout-held'}' on "
        f"{result['experiment']}; trace {result['trace_id']}")
    if result["alarm"]:
        raise typer.Exit(1)
