"""The loop: baseline, then propose -> validate -> run -> keep or discard -> record, until a stop.

    from tracekit.optimizer import Optimizer, load_target
    opt = Optimizer(load_target("examples/tinylm"), iterations=6)
    summary = opt.run()          # resumable: run it again and it continues where it stopped

Each experiment is one trace: `optimizer.experiment` with children `optimizer.propose`,
`optimizer.validate`, `optimizer.run` (the sandbox's run span and the candidate's own spans sit
under it, via TRACEPARENT) and `optimizer.decide`. Keeps are commits on branch tracekit/<run>;
every candidate also stays reachable under refs/tracekit/<run>/<id>. See `_ledger` for how a
killed loop resumes without losing or repeating anything.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ..store import default_home
from ..store._tables import ExperimentRow
from ._execute import Executor, Flight, make_executor
from ._ledger import Ledger
from ._proposer import Proposer, ProposerExhausted
from ._proposers import make_proposer
from ._records import Recorder
from ._session import Session
from ._target import Target
from ._validate import InvalidProposal

Event = Callable[[str, dict[str, Any]], None]


@dataclass
class Summary:
    run_id: str
    home: Path
    stop_reason: str
    experiments: int
    kept: int
    best_metric: float | None
    baseline_metric: float | None
    best_experiment: str | None
    cost_usd: float
    branch: str
    results_tsv: Path
    rows: list[ExperimentRow] = field(default_factory=list)


class Optimizer:
    """Runs (or resumes) one optimization run of a target."""

    def __init__(self, target: Target, *, home: str | Path | None = None, run_id: str = "main",
                 proposer: str | Proposer | None = None, proposer_options: dict[str, Any] | None = None,
                 iterations: int | None = None, max_time_s: float | None = None, max_cost_usd: float | None = None,
                 target_value: float | None = None, workers: int = 1, executor: str = "local",
                 feedback: str = "traces", seed: int = 0, backend: str = "auto", on_event: Event | None = None) -> None:
        if feedback not in ("traces", "scores"):
            raise OptimizerError(f"feedback {feedback!r}: use 'traces' (default) or 'scores'")
        if workers < 1:
            raise OptimizerError(f"workers must be at least 1, got {workers}")
        self.target = target
        self.home = Path(home) if home is not None else default_home(target=target.root)
        self.run_id = run_id
        self.iterations = iterations
        self.max_time_s = max_time_s
        self.max_cost_usd = max_cost_usd
        self.target_value = target_value
        self.workers = workers
        self.executor_name = executor
        self.feedback = feedback
        self.seed = seed
        self.backend = backend
        self.on_event = on_event or (lambda kind, data: None)
        self._proposer_spec = proposer
        self.proposer_options = dict(proposer_options or {})
        self.proposer: Proposer | None = None
        self.session = Session(target, self.home, run_id)
        self.stop_requested: str | None = None
        self.abort = False
        self.started = 0.0

    # -- public -------------------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        if self.stop_requested:
            self.abort = True
        self.stop_requested = self.stop_requested or reason

    def run(self) -> Summary:
        import tracekit

        prev = tracekit.get_settings()
        tracekit.configure(home=self.home, project=self.target.name)
        installed = self._install_signals()
        self.started = time.monotonic()
        try:
            self.proposer = self._make_proposer()  # a misconfigured proposer fails before any run
            self.session.open(self.on_event)
            assert self.session.ledger is not None
            self.rec = Recorder(self.session, self.target, self.feedback, self.on_event)
            self.executor: Executor = make_executor(self.executor_name, self.workers)
            rows = self.session.ledger.rows
            self.on_event("start", {"run_id": self.run_id, "resumed": bool(rows),
                                    "experiments_done": sum(1 for r in rows if r.get("proposer") != "baseline")})
            try:
                self.rec.reconcile(self.executor, self.backend)
                reason = self._loop()
            finally:
                self.executor.close()
            return self._summary(reason)
        finally:
            self.session.close()
            tracekit.flush()
            self._restore_signals(installed)
            if prev.home != self.home:
                tracekit.configure(home=prev.home, project=prev.project)

    # -- signals ---------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            self.request_stop("interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated")
            self.on_event("stopping", {"reason": self.stop_requested, "abort": self.abort})

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    # -- the loop ----------------------------------------------------------------------------------

    def _ledger(self) -> Ledger:
        assert self.session.ledger is not None
        return self.session.ledger

    def _stop_reason(self) -> str | None:
        if self.stop_requested:
            return self.stop_requested
        if self.session.stop_file.exists():
            self.session.stop_file.unlink(missing_ok=True)
            self.stop_requested = f"stop file {self.session.stop_file}"
            return self.stop_requested
        if self.max_time_s is not None and time.monotonic() - self.started >= self.max_time_s:
            return f"wall time {self.max_time_s:g} s reached"
        cost = sum(r.get("cost_usd") or 0.0 for r in self._ledger().rows)
        if self.max_cost_usd is not None and cost >= self.max_cost_usd:
            return f"proposer cost ${cost:.2f} reached the cap ${self.max_cost_usd:.2f}"
        inc = self.rec.incumbent()
        if self.target_value is not None and inc.metric is not None and self.rec.baselines_done():
            if self.target.improvement(inc.metric, self.target_value) >= 0:
                return f"target value {self.target_value:g} reached ({inc.metric:.6g})"
        return None

    def _experiments_launched(self, flights: list[Flight]) -> int:
        done = sum(1 for r in self._ledger().rows if r.get("proposer") != "baseline")
        return done + sum(1 for f in flights if not f.baseline)

    def _loop(self) -> str:
        flights: list[Flight] = list(self.rec.resumed)
        for f in flights:
            if f.handle is None:
                self.rec.launch(self.executor, f, self.backend)
        proposer_failures = 0
        exhausted: str | None = None
        while True:
            reason = self._stop_reason() or exhausted
            if self.abort:
                for f in flights:
                    self.executor.cancel(f.handle)
                return reason or "aborted"
            while reason is None and len(flights) < self.workers:
                if not self.rec.baselines_done(flights):
                    flights.append(self.rec.launch(self.executor, self.rec.baseline_flight(), self.backend))
                    continue
                if any(f.baseline for f in flights):
                    break  # the baseline's mean must be known before candidates are compared against it
                if self.iterations is not None and self._experiments_launched(flights) >= self.iterations:
                    break
                try:
                    flight = self._propose(flights)
                    proposer_failures = 0
                except ProposerExhausted as exc:
                    exhausted = str(exc)
                    break
                except OptimizerError as exc:
                    proposer_failures += 1
                    self.on_event("warning", {"message": f"proposer failed ({proposer_failures}/3): {exc}"})
                    if proposer_failures >= 3:
                        exhausted = f"the proposer failed 3 times in a row: {exc}"
                        break
                    self._sleep(min(2.0 ** proposer_failures, 30.0))
                    continue
                if flight is not None:
                    flights.append(self.rec.launch(self.executor, flight, self.backend))
                reason = self._stop_reason()
            if not flights:
                if reason:
                    return reason
                if self.iterations is not None and self._experiments_launched(flights) >= self.iterations:
                    return f"{self.iterations} experiments done"
                if exhausted:
                    return exhausted
                continue
            finished = self.executor.wait_any([f.handle for f in flights], timeout=0.25)
            for f in [f for f in flights if f.handle in finished]:
                flights.remove(f)
                again = self.rec.finish(self.executor, f, self.backend)
                if again is not None:
                    flights.append(again)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop_requested:
            time.sleep(0.1)

    def _make_proposer(self) -> Proposer:
        if isinstance(self._proposer_spec, Proposer):
            return self._proposer_spec
        return make_proposer(self._proposer_spec, self.target, {"seed": self.seed, **self.proposer_options})

    def _propose(self, flights: list[Flight]) -> Flight | None:
        assert self.proposer is not None
        rec = self.rec
        flight = rec.new_flight(self.proposer)
        try:
            rec.propose(flight, self.proposer, flights, self.seed)
        except InvalidProposal as exc:
            rec.record_invalid(flight, exc)
            repair = rec.new_flight(self.proposer, repair_of=flight)
            try:
                rec.propose(repair, self.proposer, flights, self.seed)
            except InvalidProposal as exc2:
                rec.record_invalid(repair, exc2)
                return None
            return repair
        return flight

    def _summary(self, reason: str) -> Summary:
        led = self._ledger()
        rows = led.rows
        base = self.rec.baseline_metric()
        inc = self.rec.incumbent()
        kept = sum(1 for r in rows if r["status"] == "keep")
        cost = sum(r.get("cost_usd") or 0.0 for r in rows)
        tsv = led.write_tsv(self.target.metric)
        summary = Summary(self.run_id, self.home, reason, len(rows), kept, inc.metric, base, inc.experiment_id, cost,
                          self.session.branch, tsv, rows)
        self.on_event("done", {"summary": summary})
        return summary

