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
from typing import Any, cast

from .._errors import OptimizerError
from .._util.termtext import clean
from ..store._tables import EXPERIMENTS, ExperimentRow
from ._explain import reason
from ._safefs import own_dir, write_file

STATUSES = ("baseline", "keep", "discard", "crash", "timeout", "invalid")


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
        from ..store._store import Store

        self.home = Path(home)
        self.run_id = run_id
        self.store = Store(self.home)
        self.dir = self.home / "optimizer" / run_id
        self.rows: list[ExperimentRow] = []  # without the heavy columns, prompt and raw_output
        self.load()

    def exp_dir(self, experiment_id: str) -> Path:
        return self.dir / "experiments" / experiment_id

    def load(self) -> None:
        import pyarrow.parquet as pq

        files = self.store.files("experiments")
        rows: list[ExperimentRow] = []
        for f in files:
            try:
                names = set(pq.read_schema(f).names)  # a file from an older tracekit lacks the newer columns
                t = pq.read_table(f, columns=[c for c in LIGHT_COLUMNS if c in names], filters=[("run_id", "=", self.run_id)])
            except Exception as exc:
                raise OptimizerError(f"ledger file {f} is unreadable ({exc}); move it aside to continue") from exc
            rows.extend(cast(list[ExperimentRow], [{c: r.get(c) for c in LIGHT_COLUMNS} for r in t.to_pylist()]))
        seen: dict[int, ExperimentRow] = {}
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

    def write_outcome(self, row: ExperimentRow) -> None:
        if row["experiment_id"] in self.done_ids:
            raise OptimizerError(f"experiment {row['experiment_id']} already has an outcome; refusing to write a duplicate")
        if row["status"] not in STATUSES:
            raise OptimizerError(f"status {row['status']!r} is not one of {STATUSES}")
        if not row.get("reason"):
            row["reason"] = reason(row)
        self.store.write("experiments", [row], durable=True)
        light = cast(ExperimentRow, {k: row.get(k) for k in LIGHT_COLUMNS})  # the row less two keys
        self.rows.append(light)
        self.rows.sort(key=lambda r: int(r["seq"]))
        self.write_tsv()

    def write_tsv(self, metric_name: str | None = None) -> Path:
        """autoresearch's results.tsv: commit, <metric>, memory_gb, status, description."""
        name = metric_name or next((m for r in self.rows if (m := r.get("metric_name"))), "metric")
        lines = ["\t".join(("commit", _tsv_cell(name), "memory_gb", "status", "description"))]
        for r in self.rows:
            lines.append("\t".join(tsv_fields(r)))
        path = self.dir / "results.tsv"
        write_file(path, "\n".join(lines) + "\n")  # regenerated from the rows: atomic, not fsynced
        return path


def keeps_in_order(rows: list[ExperimentRow]) -> list[ExperimentRow]:
    """Kept experiments in the order they were decided (with parallel workers that is not always seq order)."""
    return sorted((r for r in rows if r["status"] == "keep"), key=lambda r: (r.get("finished_at") is None, r.get("finished_at"), r["seq"]))


def tsv_fields(r: ExperimentRow) -> tuple[str, str, str, str, str]:
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
