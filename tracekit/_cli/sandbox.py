"""`tracekit sandbox run|check`: run one command in the sandbox; see what the sandbox enforces here.

    tracekit sandbox run --budget 60 --memory 2G -- python train.py
    tracekit sandbox run --json --metric val_bpb --workspace examples/tinylm -- python train.py
    tracekit sandbox check
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from .._errors import SandboxError
from .._util.termtext import json_text, markup
from ._common import HomeOption, console, emit, say

app = typer.Typer(help="Run a command in the sandbox; check which backend and limits work on this machine.",
                  no_args_is_help=True)

_UNITS = {"": 1, "k": 2**-10, "m": 1, "g": 2**10, "t": 2**20}


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sandbox")


def parse_mb(text: str, option: str) -> int | None:
    """'512M', '2G', '1.5GiB', '300' (MB) or 'none' -> megabytes (None: no limit)."""
    t = text.strip().lower()
    if t in ("none", "off", "0"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", t)
    if not m:
        raise SandboxError(f"{option} {text!r}: expected a size like 512M, 2G or 1.5GiB (or 'none')")
    mb = int(float(m.group(1)) * _UNITS[m.group(2)])
    if mb < 1:
        raise SandboxError(f"{option} {text!r} is under 1 MB")
    return mb


@app.command("run")
def run_cmd(
    command: Annotated[list[str], typer.Argument(help="The command, after `--`.", show_default=False)],
    budget: Annotated[float, typer.Option("--budget", "-b", help="Wall-clock budget in seconds.")] = 60.0,
    grace: Annotated[float, typer.Option("--grace", help="Seconds between SIGTERM and SIGKILL at the deadline.")] = 5.0,
    memory: Annotated[str, typer.Option("--memory", "-m", help="Memory cap: 512M, 2G, ... or none.")] = "2G",
    procs: Annotated[int, typer.Option("--procs", min=0, help="Process cap (0: none).")] = 256,
    disk: Annotated[str, typer.Option("--disk", help="Disk cap for /tmp and the run's folders: 1G, ... or none.")] = "1G",
    output: Annotated[str, typer.Option("--output", help="Cap on stdout and on stderr: 10M, ...")] = "10M",
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Folder copied for the run (default: the current one).")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Metric name, also read from `name: value` lines.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto | bwrap | unshare | local (local is NOT isolation).")] = "auto",
    network: Annotated[bool, typer.Option("--network", help="Keep the network (off by default).")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the run; repeatable.")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Where the workspace copy and logs go (default: "
                                                 "<home>/sandbox/runs/<run id>/, where the 20 newest run folders are kept; "
                                                 "a run still going is never deleted).")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="experiment_id for the run's spans.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Run COMMAND in a fresh copy of the workspace under limits. Exit 0 when the command exits 0 (with --metric,
    it must also report that metric: status ok), else 1.

    The run folder (logs, spec.json, run.json, what the run changed) goes under the store:
    <home>/sandbox/runs/<run id>/; each new run deletes the oldest finished ones beyond the 20 newest.

    Example: tracekit sandbox run --budget 300 --memory 4G --metric val_bpb -- python train.py
    """
    from ..sandbox import RunSpec, run

    if home is not None:
        import tracekit

        tracekit.configure(home=home)
    pairs = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SandboxError(f"--env {item!r}: expected KEY=VALUE")
        pairs[key] = value
    out_mb = parse_mb(output, "--output")
    spec = RunSpec(
        command=list(command), workspace=(workspace or Path.cwd()).resolve(), budget_s=budget, grace_s=grace,
        memory_mb=parse_mb(memory, "--memory"), max_procs=procs or None, disk_mb=parse_mb(disk, "--disk"),
        output_bytes=(out_mb or 10) * 2**20, network=network, env=pairs, metric=metric, backend=backend,
        run_dir=run_dir, experiment_id=experiment,
    )
    result = run(spec)
    # no --metric: the command's own exit decides (a run that reports no metric is not a failure then)
    succeeded = result.ok or (metric is None and result.status == "no_metric")
    if as_json:
        emit(json_text(result.to_dict()))
    else:
        # metric names, the error and the output tails are the candidate's: printed as text, never as markup
        color = "green" if succeeded else "red"
        console.print(f"[{color}]{markup(result.status)}[/{color}]  exit={result.exit_code} signal={result.signal} "
                      f"wall={result.wall_s:.2f}s cpu={result.cpu_s if result.cpu_s is not None else '?'}s "
                      f"peak={result.peak_memory_mb}MB backend={markup(result.backend)}")
        if result.metrics:
            say("metrics: " + ", ".join(f"{k}={v:g}" for k, v in result.metrics.items()) + f"  ({result.metric_source})")
        if result.error and succeeded:
            say(f"note: {result.error.split(';')[0]} (a metric is required only with --metric)")
        elif result.error:
            say(f"error: {result.error}")
        for name, stream in (("stdout", result.stdout), ("stderr", result.stderr)):
            lines = stream.text().rstrip("\n").splitlines()[-15:]
            if lines:
                console.print(f"[dim]--- {name} (last {len(lines)} lines of {stream.total_bytes} bytes; "
                              f"{markup(stream.path)})[/dim]", soft_wrap=True)
                say("\n".join(lines))
        console.print(f"[dim]run folder: {markup(result.run_dir)}   trace: {markup(result.trace_id)}[/dim]", soft_wrap=True)
    raise typer.Exit(0 if succeeded else 1)


@app.command("check")
def check_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Also run a tiny command in the chosen backend.")] = True,
) -> None:
    """Which backends and which limits work on this machine (each one is actually tried).

    Example: tracekit sandbox check
    """
    from ..sandbox import check

    report = check(probe_run=probe)
    if as_json:
        emit(json_text(report.to_dict()))
    else:
        say(report.summary())
