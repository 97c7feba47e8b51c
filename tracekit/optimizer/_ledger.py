"""The ledger: the `experiments` table (one row per finished experiment) plus per-experiment intents.

The ledger is the truth of a run. Before an experiment spends a run, its *intent* (id, parent,
candidate commit, diff, proposer, cost) is written and fsynced to
`<home>/optimizer/<run>/experiments/<id>/intent.json`; the sandbox result goes to `result.json`
next to it; the *outcome* is one durable row of the `experiments` Parquet table. A loop killed at
any point restarts from these: an intent with an outcome is done, an intent with a result is
decided again from that result (same answer), an intent with neither is run again under the same
id. `results.tsv` (autoresearch's five columns) is regenerated from the rows, so it never drifts.

    SELECT experiment_id, status, metric, delta, description FROM experiments ORDER BY seq
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from .._schema import BOOL, FLOAT64, INT64, JSON, STRING, TIMESTAMP, Column, Table, list_of, register_table
from .._termtext import clean
from ._safefs import own_dir, write_file

STATUSES = ("baseline", "keep", "discard", "crash", "timeout", "invalid")

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
    ),
))

LIGHT_COLUMNS = [c.name for c in EXPERIMENTS.columns if c.name not in ("prompt", "raw_output")]


def _atomic_json(path: Path, data: dict[str, Any], anchor: Path | None = None) -> None:
    """All or nothing, fsynced, and never through a link planted in the run folder (see `_safefs`)."""
    write_file(path, json.dumps(data, default=str), durable=True, anchor=anchor)


@dataclass
class Pending:
    """An intent without an outcome (the loop stopped while it was in flight)."""

    intent: dict[str, Any]
    result: dict[str, Any] | None


class Ledger:
    """The rows and intents of one run; loads once, then appends (one writer: the loop)."""

    def __init__(self, home: Path, run_id: str) -> None:
        from .._store import Store

        self.home = Path(home)
        self.run_id = run_id
        self.store = Store(self.home)
        self.dir = self.home / "optimizer" / run_id
        self.rows: list[dict[str, Any]] = []
        self.load()

    def exp_dir(self, experiment_id: str) -> Path:
        return self.dir / "experiments" / experiment_id

    def load(self) -> None:
        import pyarrow.parquet as pq

        files = self.store.files("experiments")
        rows: list[dict[str, Any]] = []
        for f in files:
            try:
                t = pq.read_table(f, columns=LIGHT_COLUMNS, filters=[("run_id", "=", self.run_id)])
            except Exception as exc:
                raise OptimizerError(f"ledger file {f} is unreadable ({exc}); move it aside to continue") from exc
            rows.extend(t.to_pylist())
        seen: dict[int, dict[str, Any]] = {}
        for r in rows:
            seen.setdefault(int(r["seq"]), r)  # a duplicate outcome cannot happen; keep the first if it did
        self.rows = [seen[k] for k in sorted(seen)]

    @property
    def done_ids(self) -> set[str]:
        return {r["experiment_id"] for r in self.rows}

    def intents(self) -> list[dict[str, Any]]:
        root = self.dir / "experiments"
        out = []
        if root.is_dir():
            for d in sorted(root.iterdir()):
                p = d / "intent.json"
                if p.is_file():
                    try:
                        out.append(json.loads(p.read_text()))
                    except ValueError:
                        continue  # torn write of an intent never acted on: it was not fsynced and renamed
        return sorted(out, key=lambda i: int(i["seq"]))

    def pending(self) -> list[Pending]:
        done = self.done_ids
        out = []
        for intent in self.intents():
            if intent["experiment_id"] in done:
                continue
            rp = self.exp_dir(intent["experiment_id"]) / "result.json"
            result = None
            if rp.is_file():
                try:
                    result = json.loads(rp.read_text())
                except ValueError:
                    result = None
            out.append(Pending(intent, result))
        return out

    def next_seq(self) -> int:
        seqs = [int(r["seq"]) for r in self.rows] + [int(i["seq"]) for i in self.intents()]
        return max(seqs) + 1 if seqs else 0

    def write_intent(self, intent: dict[str, Any]) -> None:
        own_dir(self.exp_dir(intent["experiment_id"]), anchor=self.dir)  # a link planted at a future id is undone
        _atomic_json(self.exp_dir(intent["experiment_id"]) / "intent.json", intent, anchor=self.dir)

    def write_result(self, experiment_id: str, result: dict[str, Any]) -> None:
        _atomic_json(self.exp_dir(experiment_id) / "result.json", result, anchor=self.dir)

    def write_outcome(self, row: dict[str, Any]) -> None:
        if row["experiment_id"] in self.done_ids:
            raise OptimizerError(f"experiment {row['experiment_id']} already has an outcome; refusing to write a duplicate")
        if row["status"] not in STATUSES:
            raise OptimizerError(f"status {row['status']!r} is not one of {STATUSES}")
        self.store.write("experiments", [row], durable=True)
        light = {k: row.get(k) for k in LIGHT_COLUMNS}
        self.rows.append(light)
        self.rows.sort(key=lambda r: int(r["seq"]))
        self.write_tsv()

    def write_tsv(self, metric_name: str | None = None) -> Path:
        """autoresearch's results.tsv: commit, <metric>, memory_gb, status, description."""
        name = metric_name or next((r["metric_name"] for r in self.rows if r.get("metric_name")), "metric")
        lines = ["\t".join(("commit", _tsv_cell(name), "memory_gb", "status", "description"))]
        for r in self.rows:
            lines.append("\t".join(tsv_fields(r)))
        path = self.dir / "results.tsv"
        write_file(path, "\n".join(lines) + "\n")  # regenerated from the rows: atomic, not fsynced
        return path


def keeps_in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept experiments in the order they were decided (with parallel workers that is not always seq order)."""
    return sorted((r for r in rows if r["status"] == "keep"), key=lambda r: (r.get("finished_at") is None, r.get("finished_at"), r["seq"]))


def tsv_fields(r: dict[str, Any]) -> tuple[str, str, str, str, str]:
    status = r["status"]
    tsv_status = {"baseline": "keep", "keep": "keep", "discard": "discard"}.get(status, "discard" if status == "invalid" else "crash")
    commit = (r.get("candidate_commit") or "0000000")[:7]
    metric = r.get("metric")
    metric_text = f"{metric:.6f}" if metric is not None and status not in ("crash", "timeout", "invalid") else "0.000000"
    summary = r.get("summary")
    mem = 0.0
    if summary:
        try:
            s = json.loads(summary) if isinstance(summary, str) else summary
            if "peak_vram_mb" in s:
                mem = float(s["peak_vram_mb"]) / 1024
            elif "peak_rss_mb" in s:
                mem = float(s["peak_rss_mb"]) / 1024
            elif "memory_gb" in s:
                mem = float(s["memory_gb"])
        except (ValueError, TypeError):
            mem = 0.0
    desc = str(r.get("description") or "")
    if status in ("timeout", "invalid"):
        desc = f"[{status}] {desc}".strip()
    return _tsv_cell(commit), metric_text, f"{mem:.1f}", tsv_status, _tsv_cell(desc)


def _tsv_cell(text: str) -> str:
    """One cell of results.tsv: whitespace runs (tabs, newlines) become one space, control characters visible."""
    return clean(" ".join(text.split()), newlines=False, tabs=False)
