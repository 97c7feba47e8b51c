"""Every stored table and their registry: `spans`, the optimizer's `experiments`, the eval harness's
`eval_results` and `eval_runs`. Declared here, with the store, so the store knows every table it
holds without importing the components that write them (docs/design/architecture.md).

    SELECT experiment_id, status, metric, delta, description FROM experiments ORDER BY seq
    SELECT case_id, epoch, passed, error, trace_id FROM eval_results WHERE run_id = '...'

`eval_runs` gets a row when a run starts (again when it is resumed) and when it finishes or is
interrupted; the latest row tells a run's state.

The rows that code builds and reads have TypedDicts beside their tables (`ExperimentRow`,
`EvalResultRow`, `EvalRunRow`): a NOT NULL column is a `Required` key of its Python type, any
other column a key that may be missing (written as null) or None. JSON columns hold JSON text.
tests/test_types.py fails when a TypedDict and its table disagree, so neither drifts.
"""

# No `from __future__ import annotations`: TypedDict finds its Required keys only in evaluated annotations.
import datetime as dt
import json
from pathlib import Path
from typing import Required, TypedDict

from ._schema import (
    BOOL,
    FLOAT64,
    INT64,
    JSON,
    SCHEMA_VERSION,
    STRING,
    TIMESTAMP,
    Column,
    Table,
    list_of,
    struct,
)

EVENT = struct(time=TIMESTAMP, name=STRING, attributes=JSON)
LINK = struct(trace_id=STRING, span_id=STRING, attributes=JSON)

SPANS = Table(
    name="spans",
    doc="One row per finished span (OpenTelemetry), from tracekit's decorators, any OTel instrumentation, OTLP or sandboxed runs.",
    key=("trace_id", "span_id"),
    columns=(
        Column("trace_id", STRING, "32 lowercase hex digits (W3C trace id).", required=True),
        Column("span_id", STRING, "16 lowercase hex digits.", required=True),
        Column("parent_span_id", STRING, "The parent's span id; null for a root span."),
        Column("name", STRING, "Span name.", required=True),
        Column("kind", STRING, "agent | llm | tool | chain | eval | run | retriever | embedding | span (OpenInference-compatible, lowercase).", required=True),
        Column("span_kind", STRING, "OpenTelemetry SpanKind: internal | server | client | producer | consumer."),
        Column("start_time", TIMESTAMP, "Start, UTC.", required=True),
        Column("end_time", TIMESTAMP, "End, UTC.", required=True),
        Column("duration_ms", FLOAT64, "end_time - start_time in milliseconds.", required=True),
        Column("status", STRING, "ok | error: whether the span failed. OpenTelemetry's UNSET (no error recorded) is "
               "ok, as in every other table and view (files from earlier versions say 'unset': they read as ok).",
               required=True, legacy=(("unset", "ok"),)),
        Column("status_message", STRING, "The status description (an error's message)."),
        Column("service_name", STRING, "Resource attribute service.name."),
        Column("project", STRING, "tracekit project (resource or span attribute tracekit.project)."),
        Column("experiment_id", STRING, "Optimizer experiment the span belongs to (tracekit.experiment_id)."),
        Column("input", JSON, "Captured input as JSON text (tracekit decorators, OpenInference input.value)."),
        Column("output", JSON, "Captured output as JSON text."),
        Column("attributes", JSON, "All other span attributes as a JSON object."),
        Column("events", list_of(EVENT), "Span events (exceptions, metrics, GenAI events), attributes as JSON."),
        Column("links", list_of(LINK), "Span links."),
        Column("resource", JSON, "Resource attributes as a JSON object."),
        Column("scope", STRING, "Instrumentation scope name."),
    ),
)

# The registry of stored tables: spans (above), the three below, and any a test or plugin registers.
TABLES: dict[str, Table] = {SPANS.name: SPANS}


def register_table(table: Table) -> Table:
    TABLES[table.name] = table
    return table


def get_table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(sorted(TABLES))}") from None


def all_tables() -> dict[str, Table]:
    return dict(TABLES)


def render(out_dir: Path) -> dict[Path, str]:
    """The files of `schemas/`: per table a JSON Schema and DuckDB DDL, plus an index."""
    files: dict[Path, str] = {}
    tables = all_tables()
    for name, table in sorted(tables.items()):
        files[out_dir / f"{name}.schema.json"] = json.dumps(table.json_schema(), indent=2) + "\n"
        files[out_dir / f"{name}.sql"] = table.ddl()
    index = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": "python -m tracekit.store schemas docs/tables.md",
        "tables": {n: {"doc": t.doc, "key": list(t.key), "columns": t.column_names()} for n, t in sorted(tables.items())},
    }
    files[out_dir / "index.json"] = json.dumps(index, indent=2) + "\n"
    return files


EXPERIMENTS = register_table(Table(
    name="experiments",
    doc="One row per optimizer experiment (baseline, keep, discard, crash, timeout, invalid), written when it is decided.",
    key=("run_id", "seq"),
    columns=(
        Column("experiment_id", STRING, "Unique id, '<run_id>-<seq>'; spans of the experiment carry it too.", required=True),
        Column("run_id", STRING, "The optimization run (its tag; branch tracekit/<run_id>).", required=True),
        Column("seq", INT64, "Order of the experiment in its run, from 0.", required=True),
        Column("status", STRING, "baseline | keep | discard | crash | timeout | invalid.", required=True),
        Column("project", STRING, "The target's name."),
        Column("target", STRING, "Absolute path of the target folder."),
        Column("branch", STRING, "The run's git branch (keeps are commits on it)."),
        Column("parent_id", STRING, "The experiment whose code this one started from (the incumbent)."),
        Column("parent_commit", STRING, "Commit of the parent's code."),
        Column("candidate_commit", STRING, "Commit of this experiment's code (on the branch for a keep; under refs/tracekit/ otherwise)."),
        Column("metric_name", STRING, "The metric (e.g. val_bpb)."),
        Column("direction", STRING, "min | max."),
        Column("metric", FLOAT64, "The measured metric (mean over metric_runs); null when the run failed."),
        Column("metric_runs", list_of(FLOAT64), "Every measurement of this candidate (more than one with a confirming rerun)."),
        Column("parent_metric", FLOAT64, "The incumbent's metric this one was compared against."),
        Column("delta", FLOAT64, "metric - parent_metric (raw; its sign depends on direction)."),
        Column("improvement", FLOAT64, "How much better than the incumbent, positive = better, in metric units."),
        Column("threshold", FLOAT64, "The improvement a keep needed: max(min_delta, noise_mult x noise / sqrt(len(metric_runs)))."),
        Column("noise", FLOAT64, "Run-to-run standard deviation measured on the baseline runs."),
        Column("description", STRING, "The proposer's rationale (short)."),
        Column("diff", STRING, "Full unified diff from the parent's code (kept and discarded alike)."),
        Column("files_changed", list_of(STRING), "Editable files the diff changes."),
        Column("diff_lines", INT64, "Lines added plus removed."),
        Column("content_hash", STRING, "SHA-256 of the candidate's editable files (duplicate detection)."),
        Column("proposer", STRING, "anthropic | command | search | baseline | ..."),
        Column("model", STRING, "The LLM the proposer used, if any."),
        Column("feedback", STRING, "traces | scores: what the proposer's context held."),
        Column("tokens_in", INT64, "Proposer input tokens (uncached)."),
        Column("tokens_out", INT64, "Proposer output tokens."),
        Column("cache_read_tokens", INT64, "Proposer input tokens read from the prompt cache."),
        Column("cache_write_tokens", INT64, "Proposer input tokens written to the prompt cache."),
        Column("cost_usd", FLOAT64, "Proposer cost in USD (null when unknown)."),
        Column("context_s", FLOAT64, "Seconds spent building the proposer's context (SQL sections, context folder)."),
        Column("propose_s", FLOAT64, "Seconds the proposer itself took."),
        Column("validate_s", FLOAT64, "Seconds spent validating and building the candidate."),
        Column("run_s", FLOAT64, "Wall seconds of the sandboxed run(s)."),
        Column("total_s", FLOAT64, "Wall seconds from proposal to decision."),
        Column("overhead_s", FLOAT64, "tracekit's own time around the run: total_s - propose_s - run_s (context_s included)."),
        Column("run_status", STRING, "The sandbox's status: ok | crash | timeout | oom | output_limit | no_metric | killed."),
        Column("exit_code", INT64, "Exit code of the run command."),
        Column("error", STRING, "Why it failed: the sandbox error, or the validation error of an invalid proposal."),
        Column("stdout_tail", STRING, "Last part of the run's stdout."),
        Column("stderr_tail", STRING, "Last part of the run's stderr (stack traces land here)."),
        Column("summary", JSON, "Every metric the run reported (key: value lines / TRACEKIT_RESULT JSON)."),
        Column("trace_id", STRING, "The experiment's trace (propose, validate, run, decide spans; the run's own spans under run)."),
        Column("run_span_id", STRING, "The sandbox run span inside that trace."),
        Column("attempt", INT64, "1, or more when the loop was killed during the run and ran it again."),
        Column("repair_of", STRING, "For a repair attempt: the invalid experiment it repairs."),
        Column("started_at", TIMESTAMP, "When the proposal started (UTC)."),
        Column("finished_at", TIMESTAMP, "When the experiment was decided (UTC)."),
        Column("prompt", STRING, "The rendered context the proposer received."),
        Column("raw_output", STRING, "What the proposer answered (LLM text, CLI output)."),
        Column("host", JSON, "Machine facts for the run: cpu count, load average, python."),
        Column("confirmed", BOOL, "Set when the candidate was rerun (a near-miss, or confirm = true): whether the mean still cleared the threshold."),
        Column("reason", STRING, "Why it was kept, discarded or failed, in one line with its numbers (improvement, threshold, noise)."),
        Column("alarms", list_of(STRING), "For a keep: signs of gaming the metric ('rule: message'), see tracekit.optimizer.ALARMS."),
        Column("registration", JSON, "On baseline rows: what the run pre-registered before its baseline (metric, direction, threshold rule, run command, fixed files' SHA-256, budget, holdout and its sealed files' SHA-256)."),
    ),
))


class ExperimentRow(TypedDict, total=False):
    """A row of `experiments`, as the optimizer builds it and reads it back."""

    experiment_id: Required[str]
    run_id: Required[str]
    seq: Required[int]
    status: Required[str]
    project: str | None
    target: str | None
    branch: str | None
    parent_id: str | None
    parent_commit: str | None
    candidate_commit: str | None
    metric_name: str | None
    direction: str | None
    metric: float | None
    metric_runs: list[float] | None
    parent_metric: float | None
    delta: float | None
    improvement: float | None
    threshold: float | None
    noise: float | None
    description: str | None
    diff: str | None
    files_changed: list[str] | None
    diff_lines: int | None
    content_hash: str | None
    proposer: str | None
    model: str | None
    feedback: str | None
    tokens_in: int | None
    tokens_out: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    cost_usd: float | None
    context_s: float | None
    propose_s: float | None
    validate_s: float | None
    run_s: float | None
    total_s: float | None
    overhead_s: float | None
    run_status: str | None
    exit_code: int | None
    error: str | None
    stdout_tail: str | None
    stderr_tail: str | None
    summary: str | None
    trace_id: str | None
    run_span_id: str | None
    attempt: int | None
    repair_of: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    prompt: str | None
    raw_output: str | None
    host: str | None
    confirmed: bool | None
    reason: str | None
    alarms: list[str] | None
    registration: str | None

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


class EvalResultRow(TypedDict, total=False):
    """A row of `eval_results`: one case and epoch, as the eval runner builds it and reads it back."""

    run_id: Required[str]
    task: Required[str]
    case_id: Required[str]
    epoch: Required[int]
    split: str | None
    input: str | None
    target: str | None
    output: str | None
    metadata: str | None
    score: Required[float]
    passed: Required[bool]
    scores: str | None
    explanation: str | None
    status: Required[str]
    error: str | None
    traceback: str | None
    attempts: int | None
    trace_id: str | None
    span_id: str | None
    experiment_id: str | None
    project: str | None
    start_time: dt.datetime | None
    duration_ms: float | None

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


class EvalRunRow(TypedDict, total=False):
    """A row of `eval_runs`: one event of an eval run."""

    run_id: Required[str]
    task: Required[str]
    event: Required[str]
    time: Required[dt.datetime]
    source: str | None
    splits: str | None
    case_limit: int | None
    epochs: int | None
    concurrency: int | None
    samples: int | None
    scorers: str | None
    metrics: str | None
    config: str | None
    revision: str | None
    experiment_id: str | None
    project: str | None


ANNOTATIONS = register_table(Table(
    name="annotations",
    doc="Human (or tool) labels on a trace, a span, an experiment or an eval case: review decisions, scores, notes.",
    key=("target_kind", "target_id", "time"),
    columns=(
        Column("annotation_id", STRING, "Unique id of the annotation.", required=True),
        Column("target_kind", STRING, "trace | span | experiment | eval_case.", required=True),
        Column("target_id", STRING, "trace id | '<trace id>/<span id>' | experiment id | '<eval run id>/<case id>/<epoch>'.",
               required=True),
        Column("trace_id", STRING, "The trace the target belongs to, when known (joins with spans)."),
        Column("experiment_id", STRING, "The experiment the target belongs to, when known (joins with experiments)."),
        Column("label", STRING, "A short label: approve, reject, good, bad, gaming, ... (the latest per target and author wins)."),
        Column("score", FLOAT64, "A number, when the label is a grade."),
        Column("note", STRING, "Why, in words."),
        Column("author", STRING, "Who annotated (TRACEKIT_AUTHOR, else the login name).", required=True),
        Column("source", STRING, "cli | python | ui | review | confirm."),
        Column("time", TIMESTAMP, "When, UTC.", required=True),
        Column("project", STRING, "tracekit project."),
    ),
))


class AnnotationRow(TypedDict, total=False):
    """A row of `annotations`."""

    annotation_id: Required[str]
    target_kind: Required[str]
    target_id: Required[str]
    trace_id: str | None
    experiment_id: str | None
    label: str | None
    score: float | None
    note: str | None
    author: Required[str]
    source: str | None
    time: Required[dt.datetime]
    project: str | None
