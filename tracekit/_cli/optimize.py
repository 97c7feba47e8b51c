"""`tracekit optimize TARGET_DIR`: run (or resume) the optimization loop; `status`, `report`, `stop`.

    tracekit optimize examples/tinylm --iterations 6
    tracekit optimize ./autoresearch --editable train.py --run "python train.py" --metric val_bpb --budget 300
    tracekit optimize status examples/tinylm
    tracekit optimize report examples/tinylm          # progress.png + summary.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._errors import OptimizerError
from .._util.termtext import json_text
from ..store import default_home
from ..store._tables import ExperimentRow
from ._common import FormatOption, cell, console, emit, say, short


class _DefaultRun(TyperGroup):
    """`tracekit optimize DIR ...` means `tracekit optimize run DIR ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DefaultRun, no_args_is_help=True,
                  help="Optimize a target folder: propose, run, measure, keep or revert. "
                       "Example: tracekit optimize examples/tinylm --iterations 6")


def register(root: typer.Typer) -> None:
    from . import optimize_review

    optimize_review.register(app)
    root.add_typer(app, name="optimize")


HomeOpt = Annotated[Path | None, typer.Option("--home", help="Store folder (default TARGET_DIR/.tracekit).",
                                              show_default=False)]
TagOpt = Annotated[str | None, typer.Option("--tag", help="Run name (branch tracekit/TAG); the same tag resumes.",
                                            show_default=False)]


def _home(target: Path, home: Path | None) -> Path:
    return (home or default_home(target=target)).resolve()


def _env_pairs(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise OptimizerError(f"--env {v!r}: use NAME=value")
        k, val = v.split("=", 1)
        out[k] = val
    return out


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise OptimizerError(f"--max-time {text!r}: use seconds or a number with s, m, h or d (e.g. 8h)") from None


@app.command("run")
def run_cmd(
    target_dir: Annotated[Path, typer.Argument(help="The target folder (with tracekit.toml, or use the flags).")],
    iterations: Annotated[int | None, typer.Option("--iterations", "-n", help="Stop when the run has this many experiments (baseline runs not counted; a resumed run counts the ones it already has).")] = None,
    budget: Annotated[float | None, typer.Option("--budget", help="Wall-clock seconds per run (overrides budget_s).")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Experiments running at once.")] = 1,
    proposer: Annotated[str | None, typer.Option("--proposer", help="anthropic | command | search (default: anthropic if ANTHROPIC_API_KEY is set, else search).")] = None,
    feedback: Annotated[str, typer.Option("--feedback", help="traces (default) | scores: what the proposer sees of past runs.")] = "traces",
    tag: TagOpt = None,
    home: HomeOpt = None,
    max_time: Annotated[str | None, typer.Option("--max-time", help="Stop after this wall time (e.g. 8h, 30m, 600).")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Stop when the proposer has cost this many USD.")] = None,
    target_value: Annotated[float | None, typer.Option("--target-value", help="Stop once the metric reaches this value.")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local | ray")] = "local",
    model: Annotated[str | None, typer.Option("--model", help="Claude model for --proposer anthropic.")] = None,
    proposer_cmd: Annotated[str | None, typer.Option("--proposer-cmd", help="Command for --proposer command ({prompt_file}, {context_dir}, {workspace}, {rationale_file}).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the search proposer.")] = 0,
    editable: Annotated[list[str] | None, typer.Option("--editable", help="Editable file (repeatable).")] = None,
    fixed: Annotated[list[str] | None, typer.Option("--fixed", help="Fixed file checked by hash (repeatable).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run command, e.g. 'python train.py'.")] = None,
    setup: Annotated[str | None, typer.Option("--setup", help="Command run once before the baseline.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Metric name the run prints (e.g. val_bpb).")] = None,
    direction: Annotated[str | None, typer.Option("--direction", help="min | max")] = None,
    program: Annotated[str | None, typer.Option("--program", help="The human's direction (default program.md).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="NAME=value for every run (repeatable).")] = None,
    baseline_runs: Annotated[int | None, typer.Option("--baseline-runs", help="Baseline repeats to measure noise.")] = None,
    min_delta: Annotated[float | None, typer.Option("--min-delta", help="A keep must beat the incumbent by more than this.")] = None,
    confirm: Annotated[bool | None, typer.Option("--confirm/--no-confirm", help="Rerun every would-be keep once / never rerun (default: rerun near-misses).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Sandbox backend: auto | bwrap | unshare | local.")] = "auto",
    live: Annotated[bool | None, typer.Option("--live/--plain", help="Live display (default when on a terminal).")] = None,
) -> None:
    """Run the loop on TARGET_DIR (resumes the run with the same --tag). Ctrl-C stops after the runs in flight.

    Example: tracekit optimize examples/tinylm --iterations 6 --workers 1
    """
    from ..optimizer import Optimizer, load_target
    from ..optimizer._proposers import default_proposer_name
    from ._optimize_live import Progress

    overrides: dict[str, Any] = {
        "budget_s": budget, "editable": editable, "fixed": fixed, "run": run, "setup": setup, "metric": metric,
        "direction": direction, "program": program, "env": _env_pairs(env), "baseline_runs": baseline_runs,
        "min_delta": min_delta, "confirm": confirm,
    }
    target = load_target(target_dir, overrides)
    options: dict[str, Any] = {}
    if model:
        options["model"] = model
    if proposer_cmd:
        options["command"] = proposer_cmd
    chosen = proposer or target.proposer.get("name") or default_proposer_name()
    the_home = _home(target.root, home)
    run_id = tag or "main"
    show_live = sys.stdout.isatty() if live is None else live
    title = f"tracekit optimize {target.name} · run {run_id} · proposer {chosen} · feedback {feedback}"
    progress = Progress(title, iterations, target.metric, show_live, budget_s=target.budget_s, workers=workers,
                        max_time_s=_duration(max_time), baseline_runs=target.noise.baseline_runs)
    opt = Optimizer(target, home=the_home, run_id=run_id, proposer=chosen, proposer_options=options,
                    iterations=iterations, max_time_s=_duration(max_time), max_cost_usd=max_cost,
                    target_value=target_value, workers=workers, executor=executor, feedback=feedback, seed=seed,
                    backend=backend, on_event=progress)
    if not show_live:
        say(title)
    with progress:
        summary = opt.run()
    say(f"\nstopped: {summary.stop_reason}")  # may quote a proposer's error
    _print_ledger(summary.rows, target.metric)
    base, best = summary.baseline_metric, summary.best_metric
    if base is not None and best is not None:
        say(f"baseline {target.metric} {base:.6g} -> best {best:.6g} ({summary.best_experiment}); "
            f"{summary.kept} kept; proposer cost ${summary.cost_usd:.4f}")
    say(f"ledger: tracekit sql --home {the_home} \"SELECT * FROM experiments\"   results.tsv: {summary.results_tsv}\n"
        f"branch: tracekit/{run_id} in {opt.session.repo.git_dir if opt.session.repo else '?'}")


def _print_ledger(rows: list[ExperimentRow], metric: str, limit: int = 60) -> None:
    """The last ledger rows as a table; every cell a Rich `Text` (rationales and errors are a proposer's or a run's)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .._util.termtext import clean
    from ..optimizer._explain import short_reason

    cols = ["experiment_id", "status", metric, "why", "commit", "proposer", "run_s", "description"]
    out: list[list[Any]] = []
    for r in rows[-limit:]:
        run_s = r.get("run_s")
        out.append([r["experiment_id"], r["status"], r.get("metric"), short_reason(r),
                    (r.get("candidate_commit") or "")[:7], r.get("proposer"),
                    None if run_s is None else round(run_s, 1), short(r.get("description") or "", 100)])
    wide = Console(width=max(console.width, 180), highlight=False, soft_wrap=False, emoji=False)
    table = Table(header_style="bold")
    for i, c in enumerate(cols):
        table.add_column(Text(clean(c, newlines=False)), overflow="fold", no_wrap=i != len(cols) - 1)
    for cells in out:
        table.add_row(*[cell(v, 100) for v in cells])
    wide.print(table)


def _resolve(target_dir: Path | None, home: Path | None) -> Path:
    if home is not None:
        return home.resolve()
    if target_dir is None:
        target_dir = Path(".")
    return _home(target_dir.resolve(), None)


@app.command("status")
def status_cmd(
    target_dir: Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)] = None,
    tag: TagOpt = None,
    home: HomeOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Ledger rows to show (newest).")] = 20,
    fmt: Annotated[str, FormatOption("table", "json")] = "table",
) -> None:
    """Where a run stands: summary, experiments in flight, the last ledger rows.

    Example: tracekit optimize status examples/tinylm
    """
    from ..optimizer._ledger import Ledger
    from ..optimizer._registration import describe, of_rows
    from ..optimizer._report import pick_run, summary_markdown

    h = _resolve(target_dir, home)
    run_id = pick_run(h, tag)
    led = Ledger(h, run_id)
    pending = led.pending()
    registered = of_rows(led.rows)
    if fmt == "json":
        emit(json_text({"run_id": run_id, "rows": led.rows, "in_flight": [p.intent["experiment_id"] for p in pending],
                        "registration": registered}, default=str))
        return
    say(summary_markdown(led.rows, run_id, len(pending)))
    say("\n".join(describe(registered)) if registered else "pre-registered: nothing recorded (a run from before "
        "registrations, or its baseline has not finished)")
    for p in pending:
        say(f"in flight (or interrupted): {p.intent['experiment_id']} {short(p.intent.get('description'), 80)}")
    metric = (led.rows[0]["metric_name"] if led.rows else None) or "metric"
    _print_ledger(led.rows, metric, limit)


@app.command("report")
def report_cmd(
    target_dir: Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)] = None,
    tag: TagOpt = None,
    home: HomeOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the plot (default <run folder>/progress.png).")] = None,
) -> None:
    """Write progress.png (metric per experiment, kept ones marked) and summary.md; print the summary.

    Example: tracekit optimize report examples/tinylm --out progress.png
    """
    from ..optimizer._report import ledger_rows, pick_run, plot_progress, summary_markdown
    from ..optimizer._safefs import write_file

    h = _resolve(target_dir, home)
    run_id = pick_run(h, tag)
    rows = ledger_rows(h, run_id)
    run_dir = h / "optimizer" / run_id
    png = plot_progress(rows, out or run_dir / "progress.png")
    text = summary_markdown(rows, run_id)  # free of control characters: a file humans open
    md = png.with_name("summary.md")
    write_file(md, text)  # never through a link left at that name
    say(text)
    say(f"wrote {png} and {md}")


@app.command("stop")
def stop_cmd(
    target_dir: Annotated[Path | None, typer.Argument(help="The target folder (default: .).", show_default=False)] = None,
    tag: TagOpt = None,
    home: HomeOpt = None,
) -> None:
    """Ask a running loop to stop after its experiments in flight (it watches a STOP file).

    Example: tracekit optimize stop examples/tinylm
    """
    from ..optimizer._report import pick_run
    from ..optimizer._safefs import write_file
    from ..optimizer._session import loop_pid

    h = _resolve(target_dir, home)
    run_id = pick_run(h, tag)
    run_dir = h / "optimizer" / run_id
    pid = loop_pid(run_dir)
    if pid is None:
        say(f"no loop is running run {run_id!r} (nothing to stop); it resumes where it stopped when you run "
            "`tracekit optimize` again")
        return
    stop = run_dir / "STOP"
    write_file(stop, "")
    say(f"asked the loop (pid {pid if pid > 0 else '?'}) to stop: wrote {stop}; it stops after the experiments in flight")
