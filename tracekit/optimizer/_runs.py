"""Running candidates and deciding: launch in the sandbox, keep or discard, resume after a kill.

`RunStage` is the part of the `Recorder` (`_records`) that runs and decides; it declares what it
uses of the rest of the recorder (ledger, session, repo, spans, the incumbent) and is one of its
base classes, so the two files are one class without importing each other.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._errors import OptimizerError
from ..store._tables import ExperimentRow
from ._execute import Executor, Flight, Parent
from ._proposer import Cost, Proposal
from ._safefs import remove_tree
from ._validate import Candidate

if TYPE_CHECKING:
    from ._ledger import Ledger
    from ._session import Session
    from ._target import Target

COMPACT_EVERY = 20
_KV = re.compile(r"^([A-Za-z_][\w.]*):\s+([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class RunStage(ABC):
    """Launch, finish, decide and reconcile experiments (a base class of `Recorder`, which provides the
    abstract methods below)."""

    ledger: "Ledger"
    session: "Session"
    target: "Target"
    repo: Any
    on_event: Any
    resumed: list[Flight]
    in_flight_hashes: dict[str, str]
    finished_since_compact: int

    @abstractmethod
    def incumbent(self) -> Parent: ...

    @abstractmethod
    def noise(self) -> float | None: ...

    @abstractmethod
    def threshold(self, runs: int = 1) -> float: ...

    @abstractmethod
    def files_at(self, commit: str) -> dict[str, str]: ...

    @abstractmethod
    def _span(self, name: str, kind: str, parent: otel_trace.Span | None, experiment_id: str, **attrs: Any) -> otel_trace.Span: ...

    @staticmethod
    @abstractmethod
    def _ids(span: otel_trace.Span | None) -> tuple[str | None, str | None]: ...

    @abstractmethod
    def _row(self, f: Flight, status: str) -> ExperimentRow: ...

    @abstractmethod
    def alarms(self, row: ExperimentRow, result: dict[str, Any]) -> list[str]: ...

    def _spec(self, f: Flight, workspace: Path, backend: str) -> Any:
        from tracekit.sandbox import RunSpec

        t = self.target
        ro = [str(q if q.is_absolute() else (t.root / q).resolve()) for q in (Path(p).expanduser() for p in t.ro_paths)]
        run_dir = self.ledger.exp_dir(f.experiment_id) / f"run-{f.attempt}-{len(f.results) + 1}"
        remove_tree(run_dir, anchor=self.ledger.dir)
        return RunSpec(
            command=t.run_argv(), workspace=workspace, budget_s=t.budget_s, grace_s=t.grace_s, memory_mb=t.memory_mb,
            max_procs=t.max_procs, disk_mb=t.disk_mb, output_bytes=t.output_bytes, network=t.network,
            env={**t.env, "TRACEKIT_RUN_INDEX": str(len(f.results))},  # 0, then 1 for a confirming rerun
            ro_paths=ro, metric=t.metric, experiment_id=f.experiment_id, trace_home=self.session.home, backend=backend,
            run_dir=run_dir,
        )


    def launch(self, executor: Executor, f: Flight, backend: str) -> Flight:
        assert f.candidate is not None
        ws = self.session.workspace(f.experiment_id, f.candidate.files)
        f.run_span = self._span("optimizer.run", "run", f.root, f.experiment_id,
                               **{"tracekit.optimizer.attempt": f.attempt, "tracekit.optimizer.run_index": len(f.results) + 1})
        with otel_trace.use_span(f.run_span, end_on_exit=False):  # the executor makes the run a child of this span
            f.handle = executor.submit(self._spec(f, ws, backend))
        self.on_event("launched", {"experiment_id": f.experiment_id, "baseline": f.baseline, "attempt": f.attempt,
                                   "description": f.proposal.rationale if f.proposal else ""})
        return f


    def finish(self, executor: Executor, f: Flight, backend: str) -> Flight | None:
        """Record the run that just ended; returns the flight again when it needs a confirming rerun."""
        try:
            res = executor.result(f.handle)
            result = res.to_dict()
        except Exception as exc:  # the executor itself failed (not the candidate): record it as a crash
            result = {"status": "crash", "error": f"executor error: {type(exc).__name__}: {exc}", "metrics": {},
                      "wall_s": 0.0, "exit_code": None, "stdout": {}, "stderr": {}}
        if f.run_span is not None:
            f.run_span.set_attributes({"tracekit.sandbox.status": str(result.get("status")),
                                       "tracekit.sandbox.wall_s": float(result.get("wall_s") or 0.0)})
            if result.get("status") != "ok":
                f.run_span.set_status(Status(StatusCode.ERROR, str(result.get("error") or result.get("status"))[:500]))
            f.run_span.end()
        f.results.append(result)
        self.ledger.write_result(f.experiment_id, {"attempt": f.attempt, "results": f.results})
        self._cleanup(f, result)
        return self.decide(executor, f, backend)


    def _cleanup(self, f: Flight, result: dict[str, Any]) -> None:
        """Drop the run's copies; only inside this experiment's folder, whatever run_dir the result names."""
        self.session.drop_workspace(f.experiment_id)
        run_dir = Path(str(result.get("run_dir") or ""))
        exp = self.ledger.exp_dir(f.experiment_id)
        if run_dir.parent != exp or not run_dir.name.startswith("run-"):
            return
        for sub in ("workspace", "io", "tmp"):
            try:
                remove_tree(run_dir / sub, anchor=self.ledger.dir)
            except OSError:
                pass  # left for the next cleanup of the run folder; never a reason to stop the loop


    def decide(self, executor: Executor, f: Flight, backend: str) -> Flight | None:
        """Keep, discard or record the failure; returns the flight relaunched when it needs a rerun."""
        t = self.target
        last = f.results[-1]
        span = self._span("optimizer.decide", "eval", f.root, f.experiment_id)
        status = last.get("status")
        metrics = last.get("metrics") or {}
        value = metrics.get(t.metric) if status == "ok" else None
        runs: list[float] = [r["metrics"][t.metric] for r in f.results
                             if r.get("status") == "ok" and t.metric in (r.get("metrics") or {})]
        stdout_tail, stderr_tail = _tail(last.get("stdout")), _tail(last.get("stderr"))

        def row_for(status_l: str) -> ExperimentRow:
            row = self._row(f, status_l)
            row.update({
                "run_status": status, "exit_code": last.get("exit_code"), "error": last.get("error"),
                "stdout_tail": stdout_tail, "stderr_tail": stderr_tail,
                "summary": json.dumps({**_key_values(last.get("stdout")), **metrics}), "run_span_id": last.get("span_id"),
                "metric_runs": runs,
            })
            return row

        if f.baseline:
            if value is None:
                row = row_for("crash")
                self._record(f, row, span)
                raise OptimizerError(f"the baseline run failed ({status}): {last.get('error') or ''}\n"
                                     f"{stderr_tail or stdout_tail or ''}"[-3000:]
                                     + f"\nFix the target so its unmodified code runs and prints {t.metric}.")
            row = row_for("baseline")
            row["metric"] = value
        elif value is None:
            row = row_for("timeout" if status == "timeout" else "crash")
        else:
            inc = self.incumbent()
            metric = sum(runs) / len(runs)
            thr = self.threshold(len(runs))
            imp = t.improvement(metric, inc.metric) if inc.metric is not None else 0.0
            mode = t.noise.confirm
            near_miss = bool(self.noise()) and imp > 0 and thr / 2 <= imp <= thr
            if len(runs) == 1 and ((mode == "always" and imp > thr) or (mode == "auto" and near_miss)):
                span.set_attributes({"tracekit.optimizer.decision": "confirm"})
                span.end()
                self.on_event("confirm", {"experiment_id": f.experiment_id, "metric": metric, "improvement": imp,
                                          "threshold": thr})
                return self.launch(executor, f, backend)
            confirmed = (imp > thr) if len(runs) > 1 else None
            status_l = "keep" if imp > thr else "discard"
            commit = f.commit
            if status_l == "keep":
                commit = self._advance(f)
            row = row_for(status_l)
            row.update({"metric": metric, "parent_metric": inc.metric,
                        "delta": metric - inc.metric if inc.metric is not None else None, "improvement": imp,
                        "confirmed": confirmed, "candidate_commit": commit, "threshold": thr})
            if status_l == "keep":
                alarms = self.alarms(row, last)
                row["alarms"] = alarms
                span.set_attributes({"tracekit.optimizer.alarms": len(alarms)})
        self._record(f, row, span)
        return None


    def _advance(self, f: Flight) -> str:
        """Move the branch to the candidate (re-parented if the branch moved meanwhile); idempotent."""
        assert f.commit is not None
        head = self.session.branch_head()
        if self.repo.tree(head) == self.repo.tree(f.commit) and head != self.incumbent().commit:
            return head  # already moved before a kill: the outcome row is what was missing
        new = f.commit if head == f.parent.commit else self.repo.recommit(
            f.commit, head, f"{f.experiment_id}: {(f.proposal.rationale if f.proposal else '')}"[:2000])
        self.session.move_branch(new, head)
        return new


    def _record(self, f: Flight, row: ExperimentRow, span: Any) -> None:
        span.set_attributes({"tracekit.optimizer.status": row["status"],
                             "tracekit.optimizer.metric": row.get("metric") if row.get("metric") is not None else float("nan"),
                             "tracekit.optimizer.improvement": row.get("improvement") if row.get("improvement") is not None else 0.0})
        span.end()
        self.ledger.write_outcome(row)
        if f.candidate is not None:
            self.in_flight_hashes.pop(f.candidate.content_hash, None)
        if f.root is not None:
            f.root.set_attributes({"tracekit.optimizer.status": row["status"]})
            if row["status"] in ("crash", "timeout"):
                f.root.set_status(Status(StatusCode.ERROR, f"{row['status']}: {row.get('error') or ''}"[:500]))
            f.root.end()
        self.on_event("finished", {"row": row})
        self.finished_since_compact += 1
        if self.finished_since_compact >= COMPACT_EVERY:
            self.finished_since_compact = 0
            for table in ("spans", "experiments"):
                try:
                    self.ledger.store.compact(table)
                except Exception as exc:  # compaction is an optimization; never stop the loop for it
                    self.on_event("warning", {"message": f"compacting {table} failed: {exc}"})


    # -- resume ---------------------------------------------------------------------------------------


    def reconcile(self, executor: Executor, backend: str) -> None:
        """Finish what a killed loop left: decide intents that have results, re-run the others."""
        for p in self.ledger.pending():
            i = p.intent
            parent = Parent(i.get("parent_id"), i["parent_commit"], i.get("parent_metric"))
            f = Flight(i["experiment_id"], int(i["seq"]), bool(i.get("baseline")), parent,
                       attempt=int(i.get("attempt", 1)), commit=i.get("candidate_commit"), prompt=i.get("prompt") or "",
                       proposer=i.get("proposer") or "", repair_of=i.get("repair_of"),
                       started_at=float(i.get("started_at") or time.time()))
            f.intent = dict(i)
            c = i.get("cost") or {}
            f.proposal = Proposal(rationale=i.get("description") or "", model=i.get("model"), raw_output=i.get("raw_output") or "",
                                  cost=Cost(c.get("tokens_in", 0), c.get("tokens_out", 0), c.get("cache_read", 0),
                                            c.get("cache_write", 0), c.get("usd")))
            f.context_s = float(i.get("context_s") or 0.0)
            f.propose_s, f.validate_s = float(i.get("propose_s") or 0.0), float(i.get("validate_s") or 0.0)
            f.t0 = time.monotonic() - f.context_s - f.propose_s - f.validate_s
            assert f.commit is not None
            f.candidate = Candidate(self.files_at(f.commit), i.get("diff") or "", i.get("content_hash") or "",
                                    list(i.get("files_changed") or []), int(i.get("diff_lines") or 0))
            f.root = self._span("optimizer.experiment", "chain", None, f.experiment_id,
                                **{"tracekit.optimizer.seq": f.seq, "tracekit.optimizer.resumed": True})
            if f.candidate.content_hash:
                self.in_flight_hashes[f.candidate.content_hash] = f.experiment_id
            results = (p.result or {}).get("results") or []
            if results and int((p.result or {}).get("attempt", 0)) == f.attempt:
                f.results = list(results)
                self.on_event("resumed", {"experiment_id": f.experiment_id, "action": "decide"})
                again = self.decide(executor, f, backend)
                if again is not None:
                    self.resumed.append(again)
                continue
            f.attempt += 1
            f.intent["attempt"] = f.attempt
            f.intent["trace_id"] = self._ids(f.root)[0]
            self.ledger.write_intent(f.intent)
            self.on_event("resumed", {"experiment_id": f.experiment_id, "action": "rerun", "attempt": f.attempt})
            self.resumed.append(f)
        head = self.session.branch_head()
        expected = self.incumbent().commit
        if head != expected:
            self.on_event("warning", {"message": f"branch tracekit/{self.session.run_id} was at {head[:10]}, the ledger's "
                                                 f"incumbent is {expected[:10]}; moved the branch to the ledger's"})
            self.repo.set_ref(self.session.branch, expected)


def _key_values(captured: Any) -> dict[str, float]:
    """`name: number` summary lines of a run's stdout (autoresearch's block after `---`)."""
    if not captured:
        return {}
    out: dict[str, float] = {}
    for line in ((captured.get("head") or "") + "\n" + (captured.get("tail") or "")).splitlines():
        m = _KV.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def _tail(captured: Any, limit: int = 8000) -> str | None:
    """The last `limit` characters of a run's captured stream (the sandbox's head + tail, elision marked)."""
    if not captured:
        return None
    from tracekit.sandbox import CapturedOutput

    text = CapturedOutput.from_dict(captured).text()
    return text[-limit:] if text else None
