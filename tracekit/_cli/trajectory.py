"""`tracekit traces export-atif | import-atif`: trajectories in Harbor's ATIF JSON format.

    tracekit traces export-atif 3f2a -o trajectory.json
    tracekit traces import-atif jobs/*/agent/trajectory.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._errors import TrajectoryError
from .._util.termtext import json_text
from ._common import HomeOption, emit, read_home, say


def export_atif_cmd(
    trace_id: Annotated[str, typer.Argument(help="A trace id or a unique prefix of one.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
    agent_name: Annotated[str | None, typer.Option(help="agent.name (default: the root span's name).")] = None,
    agent_version: Annotated[str | None, typer.Option(help="agent.version (default: from the root span, else 'unknown').")] = None,
    home: HomeOption = None,
) -> None:
    """Export one trace as an ATIF trajectory (JSON). Example: tracekit traces export-atif 3f2a -o run.json"""
    from ..trajectories._atif import export_atif

    read_home(home)
    doc = export_atif(trace_id, output, home=home, agent_name=agent_name, agent_version=agent_version)
    if output is None:
        emit(json_text(doc, indent=2))
    else:
        say(f"wrote {output} ({len(doc['steps'])} steps)")


def import_atif_cmd(
    paths: Annotated[list[Path], typer.Argument(help="ATIF trajectory JSON files.")],
    project: Annotated[str | None, typer.Option(help="Project of the imported traces (default: the configured one).")] = None,
    home: HomeOption = None,
) -> None:
    """Import ATIF trajectories as traces. Example: tracekit traces import-atif jobs/*/agent/trajectory.json"""
    from ..trajectories._atif_import import import_atif

    failed = 0
    for path in paths:
        try:
            tid = import_atif(path, home=home, project=project)
        except TrajectoryError as exc:
            failed += 1
            say(f"skipped {path}: {exc}", err=True)
            continue
        say(f"imported {path} as trace {tid}")
    if failed and failed == len(paths):
        raise TrajectoryError(f"none of the {len(paths)} file(s) could be imported (reasons above)")


def register(root: typer.Typer) -> None:
    from .traces import app as traces_app

    traces_app.command("export-atif")(export_atif_cmd)
    traces_app.command("import-atif")(import_atif_cmd)
