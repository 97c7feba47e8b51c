"""The experiment lifecycle on the ledger: propose, validate, launch, decide, record, and resume.

The `Recorder` is the only writer of a run's ledger and branch. Its order of writes is what makes
a SIGKILL safe at any point: intent (fsynced) -> run -> result.json (fsynced) -> branch move (a
compare-and-swap update-ref) -> outcome row (durable Parquet) -> results.tsv. On restart,
`reconcile()` decides intents that have a result (the same decision: the incumbent it is compared
against is rebuilt from the outcome rows, and a branch that already moved is recognized by its
tree) and runs again those that have none, under the same id.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._errors import OptimizerError
from ..store._tables import ExperimentRow
from ._context import ContextBuilder
from ._execute import Flight, Parent
from ._proposer import Proposal, ProposalContext, Proposer
from ._runs import RunStage
from ._safefs import own_dir, remove_tree
from ._section import elide
from ._session import Session, host_facts
from ._target import Target
from ._validate import Candidate, InvalidProposal, build_candidate, content_hash

RUN_STATUS_TO_LEDGER = {"timeout": "timeout"}  # every other failure is a crash (run_status keeps the detail)


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).replace(tzinfo=None)


class Recorder(RunStage):
    def __init__(self, session: Session, target: Target, feedback: str, on_event: Any) -> None:
        from ..store import Database

        assert session.ledger is not None and session.repo is not None
        self.session = session
        self.ledger = session.ledger
        self.repo = session.repo
        self.target = target
        self.feedback = feedback
        self.on_event = on_event
        self.builder = ContextBuilder(session.home, target, session.run_id, feedback)
        self.db = Database(session.home)
        self.seq = self.ledger.next_seq()
        self.resumed: list[Flight] = []
        self.in_flight_hashes: dict[str, str] = {}
        self._files_cache: dict[str, dict[str, str]] = {}
        self.finished_since_compact = 0

    # -- state derived from the ledger -------------------------------------------------------------

    def _baseline_rows(self) -> list[ExperimentRow]:
        return [r for r in self.ledger.rows if r["status"] == "baseline" and r.get("metric") is not None]

    def _baseline_metrics(self) -> list[float]:
        return [m for r in self._baseline_rows() if (m := r.get("metric")) is not None]

    def baseline_metric(self) -> float | None:
        vals = self._baseline_metrics()
        return sum(vals) / len(vals) if vals else None

    def noise(self) -> float | None:
        import statistics

        vals = self._baseline_metrics()
        return statistics.stdev(vals) if len(vals) >= 2 else None

    def threshold(self, runs: int = 1) -> float:
        """The improvement a keep needs when the candidate was measured `runs` times (noise of a mean shrinks)."""
        n = self.noise()
        return max(self.target.noise.min_delta, self.target.noise.noise_mult * n / runs ** 0.5 if n is not None else 0.0)

    def baselines_done(self, flights: Sequence[Flight] = ()) -> bool:
        return len(self._baseline_rows()) + sum(1 for f in flights if f.baseline) >= self.target.noise.baseline_runs

    def incumbent(self) -> Parent:
        from ._review import effective_keeps, load_chain

        keeps = effective_keeps(self.ledger.rows, load_chain(self.session.home, self.session.run_id))
        if keeps:
            r, commit = keeps[-1]
            if not commit:
                raise OptimizerError(f"the ledger's keep {r['experiment_id']} has no candidate_commit; "
                                     "the experiments table of this run was changed by hand: restore it or start a new run")
            return Parent(r["experiment_id"], commit, r.get("metric"))
        base = self._baseline_rows()
        return Parent(base[-1]["experiment_id"] if base else None, self.session.meta["baseline_commit"], self.baseline_metric())

    def files_at(self, commit: str) -> dict[str, str]:
        if commit not in self._files_cache:
            self._files_cache[commit] = self.session.files_at(commit)
        return dict(self._files_cache[commit])

    def known_hashes(self) -> dict[str, str]:
        out = {h: r["experiment_id"] for r in self.ledger.rows if (h := r.get("content_hash")) and r["status"] != "invalid"}
        out.update(self.in_flight_hashes)
        return out

    # -- spans ------------------------------------------------------------------------------------

    def _span(self, name: str, kind: str, parent: otel_trace.Span | None, experiment_id: str, **attrs: Any) -> otel_trace.Span:
        from .._config import get_tracer
        from .._decorators import _kind_attrs
        from ..store._rows import EXPERIMENT_ATTR

        a = {**_kind_attrs(kind), EXPERIMENT_ATTR: experiment_id, "tracekit.run_id": self.session.run_id}
        a.update({k: v for k, v in attrs.items() if v is not None})
        ctx = otel_trace.set_span_in_context(parent) if parent is not None else otel_trace.set_span_in_context(
            otel_trace.INVALID_SPAN)
        return get_tracer().start_span(name, context=ctx, attributes=a)

    @staticmethod
    def _ids(span: otel_trace.Span | None) -> tuple[str | None, str | None]:
        if span is None:
            return None, None
        c = span.get_span_context()
        return otel_trace.format_trace_id(c.trace_id), otel_trace.format_span_id(c.span_id)

    # -- new experiments ------------------------------------------------------------------------------

    def _take_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _flight(self, seq: int, baseline: bool, parent: Parent, proposer: str) -> Flight:
        eid = f"{self.session.run_id}-{seq:04d}"
        f = Flight(eid, seq, baseline, parent, proposer=proposer)
        f.root = self._span("optimizer.experiment", "chain", None, eid, **{"tracekit.optimizer.seq": seq,
                                                                            "tracekit.optimizer.proposer": proposer})
        return f

    def baseline_flight(self) -> Flight:
        commit = self.session.meta["baseline_commit"]
        f = self._flight(self._take_seq(), True, Parent(None, commit, None), "baseline")
        f.commit = commit
        files = self.files_at(commit)
        f.candidate = Candidate(files, "", content_hash(files), [], 0)
        f.proposal = Proposal(rationale="baseline")
        self._write_intent(f)
        return f

    def new_flight(self, proposer: Proposer, repair_of: Flight | None = None) -> Flight:
        f = self._flight(self._take_seq(), False, self.incumbent(), proposer.name)
        if repair_of is not None:
            f.repair_of = repair_of.experiment_id
            f.intent["repair_text"] = repair_of.intent.get("error", "")
            if repair_of.proposal is not None and repair_of.proposal.raw_output:
                f.intent["repair_text"] += "\n\nYour previous reply was:\n" + elide(repair_of.proposal.raw_output, 4000)
        return f

    def propose(self, f: Flight, proposer: Proposer, flights: list[Flight], seed: int) -> None:
        """Fill `f` with a validated candidate and write its intent, or raise InvalidProposal."""
        import tracekit

        from ._contextdir import materialize

        parent = f.parent
        files = self.files_at(parent.commit)
        tracekit.flush()
        rows = self.ledger.rows
        parent_row = dict(next((r for r in rows if r["experiment_id"] == parent.experiment_id), {}))
        parent_row.update({"experiment_id": parent.experiment_id, "metric": parent.metric, "noise": self.noise(),
                           "threshold": self.threshold()})
        t0 = time.monotonic()
        span = self._span("optimizer.propose", "chain", f.root, f.experiment_id, **{"tracekit.optimizer.proposer": proposer.name})
        try:
            system = self.builder.system()
            prompt = self.builder.render(self.db, parent_row, rows, files, repair=f.intent.get("repair_text"))
            f.prompt = system + "\n\n" + prompt
            context_dir = self.session.dir / "context"
            if getattr(proposer, "needs_context_dir", False):
                materialize(context_dir, self.db, self.ledger, files, f.prompt)
            scratch = Path(tempfile.mkdtemp(prefix=f"{f.experiment_id}-", dir=self._scratch_root()))
            f.context_s = time.monotonic() - t0
            ctx = ProposalContext(
                target=self.target, run_id=self.session.run_id, experiment_id=f.experiment_id,
                parent_id=parent.experiment_id or "", parent_commit=parent.commit, parent_metric=parent.metric,
                files=files, history=[r.copy() for r in rows], system=system, prompt=prompt, context_dir=context_dir,
                scratch=scratch, feedback=self.feedback, noise=self.noise(), threshold=self.threshold(),
                pending=[{"experiment_id": x.experiment_id, "content_hash": x.candidate.content_hash if x.candidate else None,
                          "diff": x.candidate.diff if x.candidate else ""} for x in flights],
                known_hashes=set(self.known_hashes()), repair=f.intent.get("repair_text"), seed=seed)
            with otel_trace.use_span(span, end_on_exit=False):
                try:
                    f.proposal = proposer.propose(ctx)
                finally:
                    try:
                        remove_tree(scratch)
                    except (OSError, OptimizerError):
                        pass  # a leftover scratch folder is harmless; the next proposal gets a new one
        except InvalidProposal as exc:
            f.propose_s = time.monotonic() - t0 - f.context_s
            span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
            span.end()
            raise
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
            span.record_exception(exc)
            span.end()
            self._release(f, exc)
            raise
        f.propose_s = time.monotonic() - t0 - f.context_s
        cost = f.proposal.cost
        span.set_attributes({"tracekit.optimizer.tokens_in": cost.tokens_in, "tracekit.optimizer.tokens_out": cost.tokens_out})
        span.end()
        t1 = time.monotonic()
        vspan = self._span("optimizer.validate", "span", f.root, f.experiment_id)
        try:
            cand = build_candidate(f.proposal, files, self.target, self.known_hashes())
        except InvalidProposal as exc:
            f.validate_s = time.monotonic() - t1
            vspan.set_attributes({"tracekit.optimizer.invalid": exc.reason})
            vspan.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
            vspan.end()
            raise
        f.candidate = cand
        f.commit = self.repo.commit({k: v.encode() for k, v in cand.files.items()}, parent.commit,
                                    f"{f.experiment_id}: {f.proposal.rationale or 'candidate'}"[:2000])
        self.repo.set_ref(self.session.exp_ref(f.experiment_id), f.commit)
        vspan.set_attributes({"tracekit.optimizer.diff_lines": cand.diff_lines, "tracekit.optimizer.commit": f.commit})
        vspan.end()
        f.validate_s = time.monotonic() - t1
        self._write_intent(f)

    def _scratch_root(self) -> Path:
        """The run's scratch folder, a real folder: a link left there by a command proposer is removed, not followed."""
        return own_dir(self.session.dir / "scratch", anchor=self.session.dir)

    def _release(self, f: Flight, exc: BaseException) -> None:
        """A proposal that produced nothing to record: end its trace and give its sequence number back."""
        if f.root is not None:
            f.root.set_status(Status(StatusCode.ERROR, f"proposer failed: {exc}"[:500]))
            f.root.end()
        if self.seq == f.seq + 1:
            self.seq = f.seq

    def _write_intent(self, f: Flight) -> None:
        p = f.proposal or Proposal()
        c = f.candidate
        trace_id, _ = self._ids(f.root)
        f.intent.update({
            "experiment_id": f.experiment_id, "seq": f.seq, "run_id": self.session.run_id, "baseline": f.baseline,
            "parent_id": f.parent.experiment_id, "parent_commit": f.parent.commit, "parent_metric": f.parent.metric,
            "candidate_commit": f.commit, "diff": c.diff if c else "", "files_changed": c.files_changed if c else [],
            "diff_lines": c.diff_lines if c else 0, "content_hash": c.content_hash if c else "",
            "proposer": f.proposer, "model": p.model, "description": p.rationale,
            "cost": {"tokens_in": p.cost.tokens_in, "tokens_out": p.cost.tokens_out, "cache_read": p.cost.cache_read,
                     "cache_write": p.cost.cache_write, "usd": p.cost.usd},
            "context_s": f.context_s, "propose_s": f.propose_s, "validate_s": f.validate_s, "prompt": f.prompt,
            "raw_output": p.raw_output,
            "repair_of": f.repair_of, "started_at": f.started_at, "attempt": f.attempt, "trace_id": trace_id,
            "feedback": self.feedback if not f.baseline else None,
        })
        self.ledger.write_intent(f.intent)
        if c is not None and c.content_hash:
            self.in_flight_hashes[c.content_hash] = f.experiment_id

    # -- records (runs and decisions: the RunStage base class, in _runs) -------------------------------

    def _row(self, f: Flight, status: str) -> ExperimentRow:
        p = f.proposal or Proposal()
        c = f.candidate
        trace_id, _ = self._ids(f.root)
        now = time.time()
        total = time.monotonic() - f.t0
        run_s = sum(float(r.get("wall_s") or 0.0) for r in f.results)
        return {
            "experiment_id": f.experiment_id, "run_id": self.session.run_id, "seq": f.seq, "status": status,
            "project": self.target.name, "target": str(self.target.root), "branch": self.session.branch.removeprefix("refs/heads/"),
            "parent_id": f.parent.experiment_id, "parent_commit": f.parent.commit, "candidate_commit": f.commit,
            "metric_name": self.target.metric, "direction": self.target.direction,
            "description": p.rationale, "diff": c.diff if c else None, "files_changed": c.files_changed if c else None,
            "diff_lines": c.diff_lines if c else None, "content_hash": c.content_hash if c else None,
            "proposer": f.proposer, "model": p.model, "feedback": None if f.baseline else self.feedback,
            "tokens_in": p.cost.tokens_in, "tokens_out": p.cost.tokens_out, "cache_read_tokens": p.cost.cache_read,
            "cache_write_tokens": p.cost.cache_write, "cost_usd": p.cost.usd,
            "context_s": f.context_s, "propose_s": f.propose_s, "validate_s": f.validate_s, "run_s": run_s, "total_s": total,
            "overhead_s": max(total - f.propose_s - run_s, 0.0), "trace_id": trace_id, "attempt": f.attempt,
            "repair_of": f.repair_of, "started_at": _utc(f.started_at), "finished_at": _utc(now),
            "prompt": f.prompt or None, "raw_output": p.raw_output or None, "host": json.dumps(host_facts()),
            "noise": self.noise(), "threshold": self.threshold(),
            "registration": json.dumps(self.session.meta.get("registration")) if f.baseline else None,
        }

    def alarms(self, row: ExperimentRow, result: dict[str, Any]) -> list[str]:
        """The alarm rules' verdicts on a keep (see `_alarms`)."""
        from ._alarms import AlarmInput, alarms_for

        def sql(query: str) -> list[dict[str, Any]]:
            from .._query import database

            db = database(self.session.home)
            with db.lock:
                rel = db.sql(query)
                return [dict(zip(rel.columns, r)) for r in rel.fetchall()]

        t = self.target

        def read_fixed(rel: str) -> bytes | None:
            from ._safefs import Dir

            try:
                with Dir.open(t.root) as d:
                    return d.read(rel, limit=16 << 20)
            except (OSError, OptimizerError):
                return None

        inp = AlarmInput(row=row, baselines=self._baseline_rows(), result=result, editable=list(t.editable),
                         fixed=list(t.fixed), metric=t.metric, sql=sql, read_fixed=read_fixed)
        return alarms_for(inp)

    def record_invalid(self, f: Flight, exc: InvalidProposal) -> None:
        f.intent["error"] = str(exc)
        row = self._row(f, "invalid")
        row.update({"error": f"invalid ({exc.reason}): {exc}", "candidate_commit": None})
        self.ledger.write_outcome(row)
        if f.root is not None:
            f.root.set_attributes({"tracekit.optimizer.status": "invalid"})
            f.root.set_status(Status(StatusCode.ERROR, f"invalid: {exc}"[:500]))
            f.root.end()
        self.on_event("finished", {"row": row})
