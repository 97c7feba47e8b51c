"""`tracekit eval run|list|show|compare`: run eval tasks, browse their results, compare two runs.

    tracekit eval run evals/qa.py:qa --split val --epochs 3 --concurrency 8
    tracekit eval run evals/qa.py:qa --resume 20261126T031500-a1b2c3   # finish an interrupted run
    tracekit eval list
    tracekit eval show latest --failed
    tracekit eval compare RUN_A RUN_B
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from .._util.termtext import json_text, markup
from ._common import FormatOption, HomeOption, cell, console, emit, err_console, jsonable, read_home, render_rows, say, short

app = typer.Typer(help="Run eval tasks, list and show their runs, compare two runs.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="eval")


def _configure(home: Any) -> None:
    if home is not None:
        import tracekit

        tracekit.configure(home=home)


def _json_or(text: Any, default: Any) -> Any:
    """A JSON column of a stored row (a sandboxed run may have written it): `default` when unreadable."""
    from .._util.jsonutil import loads_limited

    try:
        value = loads_limited(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _metrics_table(metrics: dict[str, float], scorer_names: list[str]) -> Any:
    """Metric and scorer names are the task's and the stored run's: cells are `Text`, never markup."""
    from rich.table import Table

    table = Table(header_style="bold", title="summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    shown = set()
    for name in ("accuracy", "score"):
        if name in metrics:
            table.add_row(name, f"{metrics[name]:.4f}", f"{metrics.get(name + '_stderr', 0.0):.4f}")
            shown |= {name, name + "_stderr"}
    for s in scorer_names:
        if f"{s}.mean" in metrics:
            table.add_row(cell(f"{s} (mean / accuracy {metrics[f'{s}.accuracy']:.3f})"), f"{metrics[f'{s}.mean']:.4f}",
                          f"{metrics[f'{s}.stderr']:.4f}")
            shown |= {f"{s}.mean", f"{s}.stderr", f"{s}.accuracy"}
    for k, v in metrics.items():
        if k not in shown:
            table.add_row(cell(k), f"{v:.4g}" if isinstance(v, float) and not v.is_integer() else f"{int(v)}", "")
    return table


@app.command("run")
def run_cmd(
    spec: Annotated[str, typer.Argument(help="FILE.py or FILE.py:task (a Task object or an @task function in the file).")],
    split: Annotated[list[str] | None, typer.Option("--split", "-s", help="Only samples of this split (train, val, test); repeatable or comma-separated.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most this many samples (in dataset order).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", "-e", help="Repetitions per case (default: the task's).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Cases run at once (default: the task's).")] = None,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Seconds per solver attempt (default: the task's).")] = None,
    retries: Annotated[int | None, typer.Option("--retries", min=0, help="Retries after transient errors (default: the task's).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this interrupted run (id, prefix or 'latest'); finished cases are not redone.")] = None,
    experiment_id: Annotated[str | None, typer.Option("--experiment", envvar="TRACEKIT_EXPERIMENT_ID", help="Tag the run and its traces with this experiment id.")] = None,
    fail_under: Annotated[float | None, typer.Option("--fail-under", help="Exit 1 when accuracy is below this (for CI).")] = None,
    fmt: Annotated[str, FormatOption("table", "json")] = "table",
    home: HomeOption = None,
) -> None:
    """Run an eval task; every case is traced and stored. Example: tracekit eval run evals/qa.py:qa --split val -e 3"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..evals import load_task, run_eval

    _configure(home)
    task, source = load_task(spec)
    state: dict[str, Any] = {"run_id": None, "failed": 0}
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
                        console=err_console, transient=True, disable=fmt != "table")
    bar: list[Any] = []

    def on_start(run_id: str, to_run: int, already: int) -> None:
        state["run_id"] = run_id
        if already:
            say(f"resuming {run_id}: {already} case results kept, {to_run} to run", err=True)
        bar.append(progress.add_task(markup(f"{task.name} {run_id}", newlines=False), total=to_run, failed=0))

    def on_result(row: dict[str, Any], done: int, total: int) -> None:
        if not row["passed"]:
            state["failed"] += 1
        progress.update(bar[0], completed=done, failed=state["failed"])

    try:
        with progress:
            report = run_eval(task, splits=split, limit=limit, epochs=epochs, concurrency=concurrency,
                              time_limit=time_limit, retries=retries, resume=resume, experiment_id=experiment_id,
                              source=source, on_start=on_start, on_result=on_result)
    except KeyboardInterrupt:
        if state["run_id"]:
            say(f"interrupted; finished cases are stored. Resume with: tracekit eval run {spec} --resume {state['run_id']}",
                err=True)
        raise typer.Exit(130) from None
    if fmt == "json":
        emit(json_text({"run_id": report.run_id, "task": report.task, "status": report.status,
                        "metrics": report.metrics, "settings": jsonable(report.settings)}))
    else:
        console.print(_metrics_table(report.metrics, report.scorer_names))
        failures = report.failures()
        if failures:
            render_rows(["case_id", "epoch", "split", "status", "score", "why", "trace"],
                        [[r["case_id"], r["epoch"], r["split"], r["status"], r["score"], short(r["explanation"], 80),
                          (r["trace_id"] or "")[:12]] for r in failures[:10]], "table")
            if len(failures) > 10:
                console.print(f"[dim]{len(failures) - 10} more failures: tracekit eval show {markup(report.run_id)} --failed[/dim]")
        emit(report.summary())
    if fail_under is not None and report.metrics.get("accuracy", 0.0) < fail_under:
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    task: Annotated[str | None, typer.Option("--task", help="Only runs of this task.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, newest first.")] = 20,
    fmt: Annotated[str, FormatOption("table", "csv", "json", "jsonl")] = "table",
    home: HomeOption = None,
) -> None:
    """List eval runs, newest first. Example: tracekit eval list --task qa -n 5"""
    from ..evals._results import list_runs

    read_home(home)
    rows = list_runs(home, limit=limit, task=task)
    cols = ["run_id", "task", "state", "started", "cases", "errors", "accuracy", "score"]
    if fmt == "table":
        cols.remove("started")  # the run id starts with its UTC start time; the table fits 80 columns without it
    if fmt != "table" or any(r["experiment_id"] for r in rows):
        cols.append("experiment_id")
    emit(render_rows(cols, [[r[c] for c in cols] for r in rows], fmt))


@app.command("show")
def show_cmd(
    run: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or 'latest'.")],
    failed: Annotated[bool, typer.Option("--failed", help="Only cases that did not pass.")] = False,
    width: Annotated[int, typer.Option(min=10, help="Characters of output / explanation to show.")] = 60,
    fmt: Annotated[str, FormatOption("table", "csv", "json", "jsonl")] = "table",
    home: HomeOption = None,
) -> None:
    """Show a run: its settings, metrics and one line per case and epoch. Example: tracekit eval show latest --failed"""
    from ..evals._results import resolve_run, run_events, run_rows

    read_home(home)
    run_id = resolve_run(run, home)
    events = run_events(run_id, home)
    rows = run_rows(run_id, home)
    if failed:
        rows = [r for r in rows if not r["passed"]]
    cols = ["case_id", "epoch", "split", "status", "score", "passed", "output", "explanation", "attempts", "duration_ms", "trace_id"]
    if fmt != "table":
        emit(render_rows(cols + ["error", "scores"], [[r.get(c) for c in cols + ["error", "scores"]] for r in rows], fmt))
        return
    last: Mapping[str, Any] = events[-1] if events else {}
    metrics = _json_or(last.get("metrics"), {})
    scorer_names = _json_or(last.get("scorers"), [])
    console.print(f"[bold]{markup(run_id)}[/bold] task [bold]{markup(last.get('task', '?'))}[/bold] · "
                  f"{markup(last.get('event', '?'))} · epochs {markup(last.get('epochs'))} · samples {markup(last.get('samples'))}"
                  + (f" · source {markup(last['source'])}" if last.get("source") else "")
                  + (f" · experiment {markup(last['experiment_id'])}" if last.get("experiment_id") else ""))
    if metrics:
        console.print(_metrics_table(metrics, scorer_names))
    render_rows(["case_id", "ep", "split", "status", "score", "output", "why", "trace"],
                [[r["case_id"], r["epoch"], r["split"], r["status"], r["score"], short(r["output"], width),
                  short(r["explanation"], width), (r["trace_id"] or "")[:12]] for r in rows], "table", max_width=max(width, 32))
    console.print("[dim]full rows: --format json · a case's trace: tracekit traces show TRACE[/dim]")


@app.command("compare")
def compare_cmd(
    run_a: Annotated[str, typer.Argument(help="The baseline run (id, prefix or 'latest').")],
    run_b: Annotated[str, typer.Argument(help="The run to compare with it.")],
    max_cases: Annotated[int, typer.Option("--max-cases", min=0, help="Regressions / fixes to list.")] = 20,
    fmt: Annotated[str, FormatOption("text", "json")] = "text",
    home: HomeOption = None,
) -> None:
    """Per-case regressions and fixes from A to B, aggregate delta ± stderr. Example: tracekit eval compare 2026112 latest"""
    from ..evals import compare

    read_home(home)
    c = compare(run_a, run_b, home=home)
    if fmt == "json":
        emit(json_text(jsonable(c.to_dict())))
    else:
        emit(c.render(max_cases=max_cases))
