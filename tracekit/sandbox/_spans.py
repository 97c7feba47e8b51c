"""Traces of a run: the `run` span (with the result) and spans the candidate emitted inside.

Inside, the candidate has `TRACEKIT_HOME` = a spool folder (tracekit writes Parquet there) and
`OTEL_EXPORTER_OTLP_ENDPOINT` = the shim's loopback receiver (any OpenTelemetry SDK posts OTLP
there). After the run both are read back by `_spool.ingest`, never trusted: only spans and eval rows,
no symlinks, row and decoded-size caps, ids checked, every row re-tagged with the run's
experiment_id and project, then written to the real store.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._config import get_settings, get_tracer
from .._decorators import METRIC_EVENT, SpanHandle
from ..store._rows import KIND_ATTR

if TYPE_CHECKING:
    from ._spec import RunResult

_private: dict[str, otel_trace.Tracer] = {}
_private_lock = threading.Lock()


def _tracer_for(home: Path) -> tuple[otel_trace.Tracer, bool]:
    """(tracer, is_global): tracekit's own tracer when `home` is the configured home, else a private one."""
    settings = get_settings()
    if Path(settings.home).resolve() == home.resolve():
        return get_tracer(), True
    key = str(home.resolve())
    with _private_lock:
        return _private_tracer(key, home, settings), False


def _private_tracer(key: str, home: Path, settings: Any) -> otel_trace.Tracer:
    if key not in _private:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from .._exporter import ParquetSpanExporter
        from ..store._rows import PROJECT_ATTR
        from ..store._store import Store

        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name, PROJECT_ATTR: settings.project}))
        provider.add_span_processor(SimpleSpanProcessor(ParquetSpanExporter(Store(home), default_project=settings.project)))
        _private[key] = provider.get_tracer("tracekit.sandbox")
    return _private[key]


def traceparent_of(span: otel_trace.Span) -> str | None:
    """The W3C `traceparent` of `span` (None if it is invalid): a process started with it is its child."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=otel_trace.set_span_in_context(span))
    return carrier.get("traceparent")


class RunSpan:
    """The span of kind `run` around one sandboxed run; its context is the candidate's TRACEPARENT."""

    def __init__(self, name: str, home: Path, traceparent: str | None, attributes: dict[str, Any]) -> None:
        self.tracer, self.is_global = _tracer_for(home)
        if traceparent:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            ctx = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        else:
            ctx = otel_context.get_current()
        attrs = {KIND_ATTR: "run", **attributes}
        self.span = self.tracer.start_span(name, context=ctx, attributes=attrs)
        sc = self.span.get_span_context()
        self.trace_id = otel_trace.format_trace_id(sc.trace_id)
        self.span_id = otel_trace.format_span_id(sc.span_id)
        from ._spool import remember_run_span

        remember_run_span(self.trace_id, self.span_id)  # so ingest knows the ids the run may not claim

    @property
    def traceparent(self) -> str | None:
        return traceparent_of(self.span)

    def finish(self, result: "RunResult", command: list[str]) -> None:
        handle = SpanHandle(self.span)
        handle.set_input({"command": command, "limits": result.limits})
        handle.set_output({"status": result.status, "metrics": result.metrics, "error": result.error})
        attrs: dict[str, Any] = {
            "tracekit.run.status": result.status,
            "tracekit.run.backend": result.backend,
            "tracekit.run.wall_s": result.wall_s,
            "tracekit.run.changed_files": len(result.changed_files),
            "tracekit.run.stdout_bytes": result.stdout.total_bytes,
            "tracekit.run.stderr_bytes": result.stderr.total_bytes,
        }
        for key, value in (("exit_code", result.exit_code), ("signal", result.signal), ("cpu_s", result.cpu_s),
                           ("peak_memory_mb", result.peak_memory_mb), ("metric", result.metric),
                           ("metric_source", result.metric_source), ("error", result.error)):
            if value is not None:
                attrs[f"tracekit.run.{key}"] = value
        if result.metric is not None and result.metric in result.metrics:
            attrs["tracekit.run.metric_value"] = result.metrics[result.metric]
        self.span.set_attributes(attrs)
        for name, value in result.metrics.items():
            self.span.add_event(METRIC_EVENT, {"name": name, "value": value})
        if result.status == "ok":
            self.span.set_status(Status(StatusCode.OK))
        else:
            self.span.set_status(Status(StatusCode.ERROR, f"{result.status}: {result.error or ''}".strip()))
        self.span.end()
        if self.is_global:
            from .._config import flush

            flush()


# -- reading spans back from the run's spool -------------------------------------------------------


def ingest(io_dir: Path, home: Path, experiment_id: str, max_bytes: int, *, run_trace_id: str | None = None,
           run_span_id: str | None = None, project: str | None = None, max_rows: int | None = None) -> tuple[int, list[str]]:
    """Bring the run's spans and eval rows home (span rows stored, problems); see `_spool` for the checks.

    `run_trace_id` / `run_span_id` name the harness's run span (default: the `RunSpan` started last
    on this thread); `project` defaults to the configured one; `max_rows` to `_spool.MAX_ROWS`.
    Bad input never raises: it is a problem.
    """
    from . import _spool

    return _spool.ingest(io_dir, home, experiment_id, max_bytes, run_trace_id=run_trace_id, run_span_id=run_span_id,
                         project=project, max_rows=_spool.MAX_ROWS if max_rows is None else max_rows)
