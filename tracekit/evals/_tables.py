"""The eval harness's tables: `eval_results` (one row per case and epoch) and `eval_runs` (run events).

    SELECT case_id, epoch, passed, error, trace_id FROM eval_results WHERE run_id = '...'

Both are append-only like every tracekit table. `eval_runs` gets a row when a run starts (again
when it is resumed) and when it finishes or is interrupted; the latest row tells a run's state.
"""

from __future__ import annotations

from .._schema import BOOL, FLOAT64, INT64, JSON, STRING, TIMESTAMP, Column, Table, register_table

EVAL_RESULTS = register_table(Table(
    name="eval_results",
    doc="One row per eval case and epoch: the output, its scores, pass/fail, the error of a crashed case, and the case's trace.",
    key=("run_id", "case_id", "epoch"),
    columns=(
        Column("run_id", STRING, "Eval run id (see eval_runs).", required=True),
        Column("task", STRING, "Task name.", required=True),
        Column("case_id", STRING, "The sample's stable id.", required=True),
        Column("epoch", INT64, "1-based repetition of the case.", required=True),
        Column("split", STRING, "train | val | test. The optimizer only reads traces of train cases."),
        Column("input", JSON, "The sample's input as JSON text."),
        Column("target", JSON, "The sample's target as JSON text."),
        Column("output", JSON, "What the thing under test returned, as JSON text (null when it crashed)."),
        Column("metadata", JSON, "The sample's metadata as a JSON object."),
        Column("score", FLOAT64, "The first scorer's value (0 for a crashed or timed-out case).", required=True),
        Column("passed", BOOL, "True when every scorer passed.", required=True),
        Column("scores", JSON, "Per scorer: {name: {value, passed, explanation, answer, metadata}}."),
        Column("explanation", STRING, "The first failing scorer's explanation (else the first scorer's)."),
        Column("status", STRING, "ok (scored) | error (the case or a scorer crashed) | timeout (time limit hit).", required=True),
        Column("error", STRING, "For status error / timeout: 'ExceptionType: message'."),
        Column("traceback", STRING, "The tail of the error's traceback."),
        Column("attempts", INT64, "Tries the case took (retries after transient errors + 1)."),
        Column("trace_id", STRING, "The case's trace: its root span (kind eval) has the thing under test's spans below it."),
        Column("span_id", STRING, "The case's root span."),
        Column("experiment_id", STRING, "Optimizer experiment the run belongs to."),
        Column("project", STRING, "tracekit project."),
        Column("start_time", TIMESTAMP, "When the case started, UTC."),
        Column("duration_ms", FLOAT64, "Wall time of the case (solving and scoring)."),
    ),
))

EVAL_RUNS = register_table(Table(
    name="eval_runs",
    doc="Eval run events: started (also on resume), finished, interrupted; with the run's settings and final metrics.",
    key=("run_id", "time"),
    columns=(
        Column("run_id", STRING, "Eval run id.", required=True),
        Column("task", STRING, "Task name.", required=True),
        Column("event", STRING, "started | resumed | finished | interrupted.", required=True),
        Column("time", TIMESTAMP, "When the event happened, UTC.", required=True),
        Column("source", STRING, "Where the task came from (FILE.py:task), if loaded from a file."),
        Column("splits", JSON, "The splits run, as a JSON list (null: all)."),
        Column("case_limit", INT64, "--limit: at most this many samples."),
        Column("epochs", INT64, "Repetitions per case."),
        Column("concurrency", INT64, "Cases run at once."),
        Column("samples", INT64, "Samples selected for the run."),
        Column("scorers", JSON, "Scorer names, as a JSON list (the first is the primary score)."),
        Column("metrics", JSON, "Final aggregates (finished / interrupted events): accuracy, score, stderr, pass_at_k, ..."),
        Column("config", JSON, "Other settings: time_limit, retries, task metadata."),
        Column("revision", JSON, "Git commit and dirty flag of the task file's repository, when it is in one."),
        Column("experiment_id", STRING, "Optimizer experiment the run belongs to."),
        Column("project", STRING, "tracekit project."),
    ),
))
