"""`Experiments`: tracekit as the evaluation and memory of someone else's optimizer.

    from tracekit.backends import Experiments

    exps = Experiments("gepa-demo", metric="score", direction="max", proposer="gepa")
    seed = exps.evaluate({"solve.py": code}, command=["python", "solve.py"], budget_s=30)
    child = exps.evaluate({"solve.py": new_code}, command=["python", "solve.py"], parent=seed)
    print(child.status, child.metric, exps.digest(child))   # keep / discard, its score, why from its trace

Each evaluation is one experiment: an intent in the ledger folder, a sandboxed run (or an eval
task) under a budget inside the experiment's own trace, and one row of `experiments` with its
parent, diff, metric, status, proposer and cost, the same rows the built-in loop writes and
`tracekit optimize review` and SQL read. The digest is the built-in proposer's trace sections
(`optimizer._context.trace_digest`), so an outside optimizer sees what tracekit's own sees.

Optimizers fan out (OpenEvolve evaluates in worker processes), so the sequence number of a new
experiment is taken by creating its ledger folder with `mkdir`, which one process wins.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._errors import OptimizerError
from ..optimizer import Cost, Ledger
from ..optimizer._edits import diff_stats, unified_diff
from ..optimizer._safefs import own_dir, remove_tree, write_file
from ..optimizer._validate import content_hash
from ..store._tables import ExperimentRow
from ._evaluate import TEXT_FILE, Candidate, Evaluation, TaskFactory, as_files, materialize, run_command, run_task

if TYPE_CHECKING:
    from ..evals import Task

TRACE_ID = re.compile(r"[0-9a-f]{32}")
RUN_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _tail(text: str | None, limit: int = 8000) -> str | None:
    return text[-limit:] if text else None


class Experiments:
    """One run of experiments (`run_id`) in the store at `home` (tracekit's configured one by default).

    `metric` names what is optimized (a key the command prints or `$TRACEKIT_RESULT` holds, or a
    metric of the eval report: `score`, `accuracy`, ...), `direction` whether higher or lower is
    better; a child is kept when it beats its parent by more than `min_delta`.
    """

    def __init__(self, run_id: str | None = None, *, metric: str = "score", direction: str = "max", proposer: str = "custom",
                 home: str | Path | None = None, project: str | None = None, min_delta: float = 0.0) -> None:
        from .._config import get_settings

        if run_id is None:
            run_id = "backend-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        if not isinstance(run_id, str) or not run_id or len(run_id) > 100 or not set(run_id) <= RUN_ID_OK or run_id[0] == ".":
            raise OptimizerError(f"run id {run_id!r}: use letters, digits, '-', '_' and '.' (at most 100, not starting with '.')")
        if direction not in ("min", "max"):
            raise OptimizerError(f"direction {direction!r}: expected 'min' or 'max'")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
            raise OptimizerError(f"min_delta {min_delta!r}: expected a finite number >= 0")
        settings = get_settings()
        self.home = Path(home) if home is not None else settings.home
        self.run_id, self.metric, self.direction, self.proposer = run_id, metric, direction, proposer
        self.project = project or settings.project
        self.min_delta = float(min_delta)
        self.ledger = Ledger(self.home, run_id)
        self._lock = threading.Lock()  # optimizers evaluate from threads (GEPA's engine): one ledger update at a time
        if (self.ledger.dir / "run.json").exists():
            raise OptimizerError(f"run {run_id!r} in {self.home} is a `tracekit optimize` run; give the backend run another id")

    # -- the ledger -------------------------------------------------------------------------------------

    def rows(self) -> list[ExperimentRow]:
        """This run's `experiments` rows, oldest first (re-read: other processes may have added some)."""
        with self._lock:
            self.ledger.load()
            return list(self.ledger.rows)

    def incumbent(self) -> ExperimentRow | None:
        """The best baseline or keep so far (by metric and direction), the parent a new candidate starts from."""
        scored = [r for r in self.rows() if r["status"] in ("baseline", "keep") and r.get("metric") is not None]
        if not scored:
            return None
        key = (lambda r: r["metric"]) if self.direction == "max" else (lambda r: -r["metric"])
        return max(scored, key=key)

    def row(self, experiment_id: str) -> ExperimentRow | None:
        return next((r for r in self.rows() if r["experiment_id"] == experiment_id), None)

    def _new_id(self) -> tuple[int, str]:
        """The next free sequence number, claimed by creating its folder (atomic across processes)."""
        root = own_dir(self.ledger.dir / "experiments", anchor=self.home)
        seq = self.ledger.next_seq()
        while True:
            eid = f"{self.run_id}-{seq:04d}"
            try:
                os.mkdir(root / eid)
                return seq, eid
            except FileExistsError:
                seq += 1

    def record(self, files: Mapping[str, str] | str, *, metric: float | None, status: str | None = None,
               parent: "Evaluation | str | None" = None, run_status: str = "ok", description: str = "",
               proposer: str | None = None, cost: Cost | None = None, model: str | None = None,
               metrics: Mapping[str, float] | None = None, error: str | None = None, trace_id: str | None = None,
               stdout_tail: str | None = None, stderr_tail: str | None = None, run_s: float | None = None,
               feedback: str = "traces", exit_code: int | None = None) -> ExperimentRow:
        """Write one experiment's row: its candidate's diff from the parent, its metric and status (decided
        against the parent's metric when not given: baseline without a parent, crash / timeout / invalid
        for a failed run, keep when it scores and its parent did not, else keep or discard by `min_delta`).
        Returns the row as written."""
        return self._record(files, None, metric=metric, status=status, parent=parent, run_status=run_status,
                            description=description, proposer=proposer, cost=cost, model=model, metrics=metrics,
                            error=error, trace_id=trace_id, stdout_tail=stdout_tail, stderr_tail=stderr_tail,
                            run_s=run_s, feedback=feedback, exit_code=exit_code)

    def _record(self, files: Mapping[str, str] | str, ids: tuple[int, str] | None, *, metric: float | None,
                status: str | None, parent: "Evaluation | str | None", run_status: str, description: str,
                proposer: str | None, cost: Cost | None, model: str | None, metrics: Mapping[str, float] | None,
                error: str | None, trace_id: str | None, stdout_tail: str | None, stderr_tail: str | None,
                run_s: float | None, feedback: str, exit_code: int | None) -> ExperimentRow:
        """`record` under the (seq, id) `evaluate` claimed before its run, or a new one."""
        cand = as_files(files) if files else {}  # no files: an invalid candidate, recorded with its reason
        if metric is not None and (not isinstance(metric, (int, float)) or not math.isfinite(metric)):
            raise OptimizerError(f"metric {metric!r} is not a finite number; record a failed run with metric=None")
        prow = self._parent_row(parent)
        pfiles = self.candidate_files(prow["experiment_id"]) if prow else {}
        seq, experiment_id = ids if ids is not None else self._new_id()
        pmetric = prow.get("metric") if prow else None
        improvement = None
        if metric is not None and pmetric is not None:
            improvement = (metric - pmetric) if self.direction == "max" else (pmetric - metric)
        if status is None:
            if metric is None:
                status = {"timeout": "timeout", "invalid": "invalid"}.get(run_status, "crash")
            elif prow is None:
                status = "baseline"
            elif pmetric is None:  # it scores where its parent failed
                status = "keep"
            else:
                status = "keep" if improvement is not None and improvement > self.min_delta else "discard"
        diff = unified_diff(pfiles, cand) if cand else ""
        added, removed = diff_stats(diff)
        c = cost or Cost()
        now = dt.datetime.now(dt.timezone.utc)
        row: ExperimentRow = {
            "experiment_id": experiment_id, "run_id": self.run_id, "seq": seq, "status": status, "project": self.project,
            "parent_id": prow["experiment_id"] if prow else None, "metric_name": self.metric, "direction": self.direction,
            "metric": metric, "metric_runs": [float(metric)] if metric is not None else [], "parent_metric": pmetric,
            "delta": (metric - pmetric) if metric is not None and pmetric is not None else None, "improvement": improvement,
            "threshold": self.min_delta, "description": description[:2000], "diff": diff,
            "files_changed": sorted(k for k in set(pfiles) | set(cand) if pfiles.get(k) != cand.get(k)),
            "diff_lines": added + removed, "content_hash": content_hash(cand), "proposer": proposer or self.proposer,
            "model": model, "feedback": feedback, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
            "cache_read_tokens": c.cache_read, "cache_write_tokens": c.cache_write, "cost_usd": c.usd,
            "run_status": run_status, "exit_code": exit_code, "error": error, "stdout_tail": _tail(stdout_tail), "stderr_tail": _tail(stderr_tail),
            "summary": json.dumps(dict(metrics or {})), "trace_id": trace_id, "run_s": run_s, "started_at": now,
            "finished_at": now,
        }
        self.ledger.write_intent({"experiment_id": experiment_id, "seq": seq, "parent_id": row["parent_id"],
                                  "proposer": row["proposer"], "description": row["description"], "trace_id": trace_id})
        write_file(self.ledger.exp_dir(experiment_id) / "candidate.json", json.dumps(cand), anchor=self.ledger.dir)
        with self._lock:
            self.ledger.load()  # rows other processes wrote meanwhile: results.tsv is regenerated from all of them
            self.ledger.write_outcome(row)
        return row

    def candidate_files(self, experiment_id: str) -> dict[str, str]:
        """The files an experiment of this run evaluated (empty when it has none recorded)."""
        if not experiment_id.startswith(self.run_id + "-"):
            return {}
        p = self.ledger.exp_dir(experiment_id) / "candidate.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _parent_row(self, parent: "Evaluation | str | None") -> ExperimentRow | None:
        if parent is None:
            return None
        pid = parent if isinstance(parent, str) else parent.experiment_id
        row = self.row(pid)
        if row is None:
            raise OptimizerError(f"parent {pid!r} is not an experiment of run {self.run_id}; pass an Evaluation it returned")
        return row

    # -- evaluating ---------------------------------------------------------------------------------------

    def evaluate(self, files: Mapping[str, str] | str, *, command: Sequence[str] | str | None = None,
                 task: "Task | TaskFactory | None" = None, parent: "Evaluation | str | None" = None,
                 budget_s: float = 60.0, workspace: str | Path | None = None, description: str = "",
                 proposer: str | None = None, cost: Cost | None = None, model: str | None = None,
                 splits: Sequence[str] | None = None, samples: Sequence[Any] | None = None,
                 memory_mb: int | None = 2048, env: Mapping[str, str] | None = None,
                 text_file: str = TEXT_FILE) -> Evaluation:
        """Run a candidate (files, or one text written to `text_file`) in a copy of `workspace`: `command`
        in the sandbox, or the eval `task` (a Task, or a function of the `Candidate` returning one) over
        `samples` / `splits`; record it and return its `Evaluation`. Never raises for the candidate's
        own faults: a bad file name or a crash is an evaluation with that status and its reason."""
        if (command is None) == (task is None):
            raise OptimizerError("evaluate needs exactly one of command=[...] (run in the sandbox) or task=Task(...)")
        if not isinstance(budget_s, (int, float)) or not math.isfinite(budget_s) or budget_s <= 0:
            raise OptimizerError(f"budget_s={budget_s!r}: expected a number of seconds > 0")
        self._parent_row(parent)  # a wrong parent is the caller's mistake: say so before spending a run
        seq, eid = self._new_id()
        t0 = time.monotonic()
        root = self._span(eid, parent)
        ev = Evaluation(eid, "invalid", "invalid", None, {}, {}, trace_id=format(root.get_span_context().trace_id, "032x"),
                        parent_id=None if parent is None else (parent if isinstance(parent, str) else parent.experiment_id))
        out = err = None
        try:
            try:
                ev.files = as_files(files, text_file)
            except OptimizerError as exc:
                ev.files, ev.error = {}, str(exc)
            if ev.files:
                ws = self.ledger.exp_dir(eid) / "workspace"
                try:
                    materialize(ev.files, Path(workspace) if workspace is not None else None, ws, anchor=self.ledger.dir)
                except OptimizerError as exc:
                    ev.error = str(exc)
                else:
                    try:
                        with otel_trace.use_span(root, end_on_exit=False):
                            out, err = self._run(ev, ws, command, task, budget_s, splits, samples, memory_mb, env or {})
                    except Exception as exc:  # the sandbox could not start: recorded as a crash, then raised
                        ev.run_status, ev.error = "crash", f"{type(exc).__name__}: {exc}"[:4000]
                        raise
                    finally:
                        remove_tree(ws, anchor=self.ledger.dir)
        finally:
            ev.wall_s = time.monotonic() - t0
            row = self._record(ev.files, (seq, eid), metric=ev.metric, status=None, parent=parent, run_status=ev.run_status,
                               description=description, proposer=proposer, cost=cost, model=model, metrics=ev.metrics,
                               error=ev.error, trace_id=ev.trace_id, stdout_tail=out, stderr_tail=err, run_s=ev.wall_s,
                               feedback="traces", exit_code=ev.result.exit_code if ev.result else None)
            ev.status, ev.improvement = row["status"], row.get("improvement")
            root.set_attributes({"tracekit.optimizer.status": ev.status, "tracekit.run.status": ev.run_status})
            if ev.metric is None:
                root.set_status(Status(StatusCode.ERROR, f"{ev.run_status}: {ev.error or ''}"[:500]))
            root.end()
            from .._config import flush

            flush()
        return ev

    def _run(self, ev: Evaluation, ws: Path, command: Sequence[str] | str | None, task: "Task | TaskFactory | None",
             budget_s: float, splits: Sequence[str] | None, samples: Sequence[Any] | None, memory_mb: int | None,
             env: Mapping[str, str]) -> tuple[str | None, str | None]:
        if command is not None:
            res = run_command(command, ws, metric=self.metric, budget_s=budget_s, experiment_id=ev.experiment_id,
                              run_dir=self.ledger.exp_dir(ev.experiment_id) / "run", memory_mb=memory_mb, env=env)
            ev.result, ev.run_status, ev.metrics, ev.error = res, res.status, dict(res.metrics), res.error
            ev.metric = res.value
            return res.stdout.text(), res.stderr.text()
        assert task is not None
        try:
            report, value = run_task(task, Candidate(dict(ev.files), ws), metric=self.metric, budget_s=budget_s,
                                     experiment_id=ev.experiment_id, splits=splits, samples=samples)
        except Exception as exc:  # the task or its factory failed as a whole (a case's failure is a row of it)
            ev.run_status, ev.error = "crash", f"{type(exc).__name__}: {exc}"[:4000]
            return None, None
        ev.report, ev.metrics, ev.metric = report, dict(report.metrics), value
        ev.case_trace_ids = [t for r in report.rows if (t := r.get("trace_id"))]
        ev.run_status = "ok" if value is not None else "no_metric"
        if value is None:
            ev.error = f"the eval report has no metric {self.metric!r}; it has {sorted(report.metrics)}"
        return None, None

    def _span(self, experiment_id: str, parent: "Evaluation | str | None") -> otel_trace.Span:
        from .._config import get_tracer
        from .._decorators import _kind_attrs
        from ..store._rows import EXPERIMENT_ATTR

        attrs = {**_kind_attrs("chain"), EXPERIMENT_ATTR: experiment_id, "tracekit.run_id": self.run_id}
        return get_tracer().start_span("backend.experiment", context=otel_trace.set_span_in_context(otel_trace.INVALID_SPAN),
                                       attributes=attrs)

    # -- reading back ---------------------------------------------------------------------------------------

    def digest(self, *experiments: "Evaluation | str", budget: int | None = None,
               sections: Sequence[str] | None = None) -> str:
        """The trace digest of these experiments (the first in the incumbent's place): errors and stack
        traces, failing train cases with their trajectories, metric curves, output tails, slowest spans,
        the sections and budgets of the built-in proposer's context (`sections` picks some by name)."""
        from ..optimizer._context import DIGEST_BUDGET, trace_digest
        from ..store import Database

        ids = [e if isinstance(e, str) else e.experiment_id for e in experiments]
        rows = {r["experiment_id"]: r for r in self.rows()}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise OptimizerError(f"no experiments {missing} in run {self.run_id}; digest takes ids this run recorded")
        return trace_digest(Database(self.home), [rows[i] for i in ids], budget or DIGEST_BUDGET, only=sections)

    def case_digest(self, trace_id: str) -> str:
        """One train eval case by its trace id: input, output, why it failed, traceback tail, its LLM and
        tool calls; empty for a val or test case (an optimizer never reads those)."""
        return case_digest(trace_id, self.home)


def case_digest(trace_id: str, home: str | Path | None = None, budget: int | None = None) -> str:
    """`Experiments.case_digest` for any store (tracekit's configured one by default); empty for anything
    that is not a trace id (it may come from an optimizer's objects, e.g. a DSPy prediction)."""
    if not isinstance(trace_id, str) or not TRACE_ID.fullmatch(trace_id):
        return ""
    from .._config import get_settings
    from ..optimizer._context_evals import CASE_BUDGET, render_case
    from ..optimizer._section import SectionInput
    from ..store import Database

    db = Database(Path(home) if home is not None else get_settings().home)
    db.refresh()
    return render_case(SectionInput(db, None, "", {}, [], {}, []), trace_id, budget or CASE_BUDGET)
