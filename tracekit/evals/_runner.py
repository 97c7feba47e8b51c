"""Running a task: every case and epoch under its own trace, scored, stored, resumable.

    report = run_eval(task, splits=["val"], limit=20, epochs=3, concurrency=8)
    report.metrics["accuracy"], report.run_id
    run_eval(task, resume=report.run_id)     # after an interruption: only the missing cases run

Each case runs under a root span of kind `eval` (a new trace; linked to the caller's span when
there is one), with the solver's own spans and one `score/<scorer>` span per scorer below it. Its
row in `eval_results` carries the trace id. Inside a sandboxed run (`$TRACEKIT_RESULT` set) the
final metrics are also written there, so the optimizer can use an eval suite as its metric.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Link, Status, StatusCode

from .._config import experiment, flush, get_settings, get_tracer
from .._decorators import _kind_attrs, _set_io, span
from .._errors import EvalError
from .._util.jsonutil import loads_limited
from ..store._store import Store
from ..store._tables import EvalResultRow, EvalRunRow
from . import _results as results
from ._metrics import summarize
from ._retry import CaseTimeout, backoff_delay, is_transient
from ._sample import SPLITS, Sample
from ._score import Score, as_score, scorer_name
from ._task import Task
from ._threads import in_thread

OnResult = Callable[[EvalResultRow, int, int], None]
TRACEBACK_CHARS = 4000


@dataclass
class EvalReport:
    """The outcome of `run_eval`: the run id, its metrics and its rows (one per case and epoch)."""

    run_id: str
    task: str
    status: str  # finished | interrupted
    metrics: dict[str, float]
    rows: list[EvalResultRow]
    scorer_names: list[str]
    skipped: int = 0  # cases already done in an earlier (resumed) attempt of the run
    duration_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """Greppable `key: value` lines."""
        lines = [f"run_id: {self.run_id}", f"task: {self.task}", f"status: {self.status}"]
        for k, v in self.metrics.items():
            lines.append(f"{k}: {v:.6g}")
        lines.append(f"duration_s: {self.duration_s:.1f}")
        return "\n".join(lines)

    def failures(self) -> list[EvalResultRow]:
        return [r for r in self.rows if not r["passed"]]


def _error_text(exc: BaseException) -> str:
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _tb_tail(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-TRACEBACK_CHARS:]


class _Runner:
    def __init__(self, task: Task, run_id: str, *, epochs: int, concurrency: int, time_limit: float | None,
                 retries: int, experiment_id: str | None, writer: results.ResultWriter, on_result: OnResult | None,
                 total: int) -> None:
        self.task = task
        self.run_id = run_id
        self.epochs = epochs
        self.time_limit = time_limit
        self.retries = retries
        self.experiment_id = experiment_id
        self.writer = writer
        self.on_result = on_result
        self.total = total
        self.done = 0
        self.rows: list[EvalResultRow] = []
        self.sem = asyncio.Semaphore(concurrency)
        self.solver = task.solver
        assert self.solver is not None
        call = getattr(self.solver, "__call__", None)
        self.is_async = inspect.iscoroutinefunction(self.solver) or inspect.iscoroutinefunction(call)
        self.pass_sample = task.passes_sample
        self.project = get_settings().project
        parent = otel_trace.get_current_span().get_span_context()
        self.links = [Link(parent)] if parent.is_valid else []

    async def _attempt(self, sample: Sample) -> Any:
        arg = sample if self.pass_sample else sample.input
        solver = self.solver
        assert solver is not None
        try:
            async with asyncio.timeout(self.time_limit) as cm:
                if self.is_async:
                    return await solver(arg)
                value = await in_thread(solver, arg)
                if inspect.isawaitable(value):
                    value = await value
                return value
        except TimeoutError:
            if cm.expired():
                raise CaseTimeout(f"the case exceeded its time limit of {self.time_limit:g}s") from None
            raise

    async def _with_retries(self, what: str, root: otel_trace.Span, call: Callable[[], Any]) -> tuple[Any, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(), attempt
            except CaseTimeout:
                raise
            except Exception as exc:
                if attempt > self.retries or not is_transient(exc, self.task.retry_on):
                    exc.attempts = attempt  # type: ignore[attr-defined]  # rides on the exception to the case's row
                    raise
                delay = backoff_delay(attempt, self.task.retry_backoff_s)
                root.add_event("tracekit.eval.retry", {"what": what, "attempt": attempt, "error": _error_text(exc)[:1000],
                                                      "delay_s": delay})
                await asyncio.sleep(delay)

    async def _score(self, scorer: Any, output: Any, sample: Sample, root: otel_trace.Span) -> Score:
        name = scorer_name(scorer)

        async def call() -> Any:
            if inspect.iscoroutinefunction(scorer) or inspect.iscoroutinefunction(getattr(scorer, "__call__", None)):
                return await scorer(output, sample)
            if getattr(scorer, "inline", False):
                value = scorer(output, sample)
            else:  # a user's function may block: keep the event loop free
                value = await asyncio.to_thread(scorer, output, sample)
            return await value if inspect.isawaitable(value) else value

        with span(f"score/{name}", kind="eval", **{"tracekit.eval.scorer": name}) as s:
            value, _ = await self._with_retries(f"scorer {name}", root, call)
            score = as_score(value, name)
            s.set_output(score.to_json())
            return score

    async def case(self, sample: Sample, epoch: int) -> None:
        async with self.sem:
            with experiment(self.experiment_id) if self.experiment_id else _nullcontext():
                row = await self._case(sample, epoch)
        self.writer.add(row)
        self.rows.append(row)
        self.done += 1
        if self.on_result is not None:
            self.on_result(row, self.done, self.total)

    async def _case(self, sample: Sample, epoch: int) -> EvalResultRow:
        started, t0 = results.utcnow(), time.monotonic()
        attrs = {**_kind_attrs("eval"), "tracekit.eval.run_id": self.run_id, "tracekit.eval.task": self.task.name,
                 "tracekit.eval.case_id": sample.id, "tracekit.eval.epoch": epoch, "tracekit.eval.split": sample.split}
        root = get_tracer().start_span(f"eval/{self.task.name}", context=otel_context.Context(), links=self.links,
                                       attributes=attrs)
        token = otel_context.attach(otel_trace.set_span_in_context(root))
        status, output, error, tb, attempts, solved = "ok", None, None, None, 1, False
        scores: dict[str, Score] = {}
        try:
            _set_io(root, "input", sample.input)
            try:
                output, attempts = await self._with_retries("solver", root, lambda: self._attempt(sample))
            except CaseTimeout as exc:
                status, error = "timeout", f"TimeoutError: {exc}"
                root.set_status(Status(StatusCode.ERROR, error))
            except Exception as exc:
                status, error, tb = "error", _error_text(exc), _tb_tail(exc)
                attempts = getattr(exc, "attempts", attempts)
                root.record_exception(exc)
                root.set_status(Status(StatusCode.ERROR, error))
            solved = status == "ok"
            if solved:
                _set_io(root, "output", output)
                for scorer in self.task.scorers:
                    name = scorer_name(scorer)
                    try:
                        scores[name] = await self._score(scorer, output, sample, root)
                    except Exception as exc:
                        status, error, tb = "error", f"scorer {name}: {_error_text(exc)}", _tb_tail(exc)
                        scores[name] = Score(0.0, passed=False, explanation=error)
                        root.set_status(Status(StatusCode.ERROR, error))
        finally:
            otel_context.detach(token)
            passed = status == "ok" and all(s.passed for s in scores.values())
            first = next(iter(scores.values()), None)
            root.set_attribute("tracekit.eval.status", status)
            root.set_attribute("tracekit.eval.passed", passed)
            root.set_attribute("tracekit.eval.score", first.value if first and status == "ok" else 0.0)
            why = error if status != "ok" else next((s.explanation for s in scores.values() if not s.passed), None)
            if why:
                root.set_attribute("tracekit.eval.explanation", why[:4000])
            root.end()
        failing = next((s for s in scores.values() if not s.passed), first)
        ctx = root.get_span_context()
        return {
            "run_id": self.run_id, "task": self.task.name, "case_id": sample.id, "epoch": epoch, "split": sample.split,
            "input": results.jsonify(sample.input), "target": results.jsonify(sample.target),
            "output": results.jsonify(output) if solved else None,
            "metadata": results.jsonify(sample.metadata),
            "score": first.value if (first is not None and status == "ok") else 0.0,
            "passed": passed,
            "scores": results.scores_column({k: v.to_json() for k, v in scores.items()}),
            "explanation": error if status != "ok" else (failing.explanation if failing else None),
            "status": status, "error": error, "traceback": tb, "attempts": attempts,
            "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
            "experiment_id": self.experiment_id, "project": self.project,
            "start_time": started, "duration_ms": (time.monotonic() - t0) * 1000.0,
        }


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _check_splits(splits: Sequence[str] | None) -> list[str] | None:
    if not splits:
        return None
    out = []
    for s in splits:
        for part in str(s).split(","):
            part = part.strip()
            if part not in SPLITS:
                raise EvalError(f"split {part!r} is not one of {', '.join(SPLITS)}")
            out.append(part)
    return sorted(set(out), key=SPLITS.index)


def run_eval(task: Task, **kwargs: Any) -> EvalReport:
    """Run `task` and return its report; see `run_eval_async` for the options.

    From inside a running event loop (a notebook), the run happens on a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_eval_async(task, **kwargs))
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, run_eval_async(task, **kwargs)).result()


def _resume_settings(run_id: str, task: Task, given: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in results.run_events(run_id) if e["event"] == "started"]
    if not events:
        raise EvalError(f"eval run {run_id} has no 'started' event; it cannot be resumed")
    first = events[0]
    if first["task"] != task.name:
        raise EvalError(f"eval run {run_id} ran task {first['task']!r}, not {task.name!r}; resume it with the same task")
    try:
        splits = loads_limited(first["splits"]) if first["splits"] else None
    except ValueError as exc:
        raise EvalError(f"eval run {run_id}: its recorded splits are unreadable ({exc}); start a new run") from None
    recorded = {"splits": splits,
                "limit": first["case_limit"], "epochs": first["epochs"]}
    for key, value in recorded.items():
        if given.get(key) is not None and given[key] != value:
            raise EvalError(f"eval run {run_id} was started with {key}={value!r}, not {given[key]!r}; "
                            "resume it with the same settings (or leave them out), or start a new run")
    return recorded


async def run_eval_async(
    task: Task,
    *,
    splits: Sequence[str] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    concurrency: int | None = None,
    time_limit: float | None = None,
    retries: int | None = None,
    resume: str | None = None,
    experiment_id: str | None = None,
    source: str | None = None,
    on_result: OnResult | None = None,
    on_start: Callable[[str, int, int], None] | None = None,
    write_metrics: bool = True,
) -> EvalReport:
    """Run every selected case x epoch of `task`; rows go to `eval_results`, spans to the store.

    `splits` / `limit` select samples (in dataset order); `epochs`, `concurrency`, `time_limit` and
    `retries` override the task's. `resume` is the id of an interrupted run to continue: cases it
    already finished are not run again. `on_result(row, done, total)` is called after each case,
    `on_start(run_id, to_run, already_done)` once before the first.
    """
    if not isinstance(task, Task):
        raise EvalError(f"run_eval needs a Task, got {type(task).__name__}")
    t_start = time.monotonic()
    settings = get_settings()
    store = Store(settings.home)
    exp = experiment_id or settings.experiment_id
    sel_splits = _check_splits(splits)
    done: set[tuple[str, int]] = set()
    previous: list[EvalResultRow] = []
    if resume:
        run_id = results.resolve_run(resume, settings.home)
        rec = _resume_settings(run_id, task, {"splits": sel_splits, "limit": limit, "epochs": epochs})
        sel_splits, limit, epochs = rec["splits"], rec["limit"], rec["epochs"]
        previous = results.run_rows(run_id, settings.home)
        done = {(r["case_id"], int(r["epoch"])) for r in previous}
    else:
        run_id = results.new_run_id()
    n_epochs = epochs if epochs is not None else task.epochs
    if not isinstance(n_epochs, int) or n_epochs < 1:
        raise EvalError(f"epochs must be an integer >= 1, got {n_epochs!r}")
    conc = concurrency if concurrency is not None else task.concurrency
    if not isinstance(conc, int) or conc < 1:
        raise EvalError(f"concurrency must be an integer >= 1, got {conc!r}")
    limit_s = time_limit if time_limit is not None else task.time_limit
    if limit_s is not None and not limit_s > 0:
        raise EvalError(f"time_limit must be > 0 seconds, got {limit_s!r}")
    n_retries = retries if retries is not None else task.retries
    dataset = task.select(sel_splits, limit)
    if not len(dataset):
        raise EvalError(f"task {task.name}: no samples selected (splits={sel_splits}, limit={limit}); "
                        f"the dataset has {len(task.dataset)} samples: {task.dataset!r}")
    selected_ids = {s.id for s in dataset}
    previous = [r for r in previous if r["case_id"] in selected_ids]
    units = [(s, e) for e in range(1, n_epochs + 1) for s in dataset if (s.id, e) not in done]

    config = {"time_limit": limit_s, "retries": n_retries, "metadata": task.metadata}
    revision = results.git_revision(Path(source.split(":")[0])) if source else None

    def run_event(event: str, metrics: str | None = None) -> EvalRunRow:
        return {"run_id": run_id, "task": task.name, "event": event, "time": results.utcnow(), "source": source,
                "splits": json.dumps(sel_splits) if sel_splits else None, "case_limit": limit, "epochs": n_epochs,
                "concurrency": conc, "samples": len(dataset), "scorers": json.dumps(task.scorer_names), "metrics": metrics,
                "config": results.jsonify(config), "revision": json.dumps(revision) if revision else None,
                "experiment_id": exp, "project": settings.project}

    results.write_run_event(store, run_event("resumed" if resume else "started"))
    writer = results.ResultWriter(store)
    runner = _Runner(task, run_id, epochs=n_epochs, concurrency=conc, time_limit=limit_s, retries=n_retries,
                     experiment_id=exp, writer=writer, on_result=on_result, total=len(units))
    if on_start is not None:
        on_start(run_id, len(units), len(previous))
    status = "interrupted"
    try:
        async with asyncio.TaskGroup() as group:
            for sample, epoch in units:
                group.create_task(runner.case(sample, epoch))
        status = "finished"
    finally:
        writer.flush()
        flush()
        rows = previous + runner.rows
        metrics = summarize(rows, task.scorer_names, task.pass_k)
        results.write_run_event(store, run_event(status, json.dumps(metrics)))
    if write_metrics:
        results.write_metric_contract(metrics)
    rows.sort(key=lambda r: (r["case_id"], int(r["epoch"])))
    return EvalReport(run_id=run_id, task=task.name, status=status, metrics=metrics, rows=rows,
                      scorer_names=task.scorer_names, skipped=len(previous), duration_s=time.monotonic() - t_start,
                      settings={"splits": sel_splits, "limit": limit, "epochs": n_epochs, "concurrency": conc,
                                "time_limit": limit_s, "retries": n_retries, "source": source})
