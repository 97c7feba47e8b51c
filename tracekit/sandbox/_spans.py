"""Traces of a run: the `run` span (with the result) and spans the candidate emitted inside.

Inside, the candidate has `TRACEKIT_HOME` = a spool folder (tracekit writes Parquet there) and
`OTEL_EXPORTER_OTLP_ENDPOINT` = the shim's loopback receiver (any OpenTelemetry SDK posts OTLP
there). After the run both are read back here, never trusted: no symlinks, size caps, ids checked,
every row re-tagged with the run's experiment_id, then written to the real store.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._config import get_settings, get_tracer
from .._decorators import METRIC_EVENT, SpanHandle
from .._spanrows import KIND_ATTR

if TYPE_CHECKING:
    from ._spec import RunResult

MAX_SPANS = 200_000
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
        from .._spanrows import PROJECT_ATTR
        from .._store import Store

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


def ingest(io_dir: Path, home: Path, experiment_id: str, max_bytes: int) -> tuple[int, list[str]]:
    """Copy the run's spans (OTLP bodies and tracekit Parquet) into `home`; (span rows, problems).

    Rows of other tables the run wrote to its spool (an eval's `eval_results`) come along too.

    OTLP bodies are decoded by the collector's decoder (same validation as `tracekit serve`).
    """
    import pyarrow as pa

    from .._store import Store
    from ..collector import _otlp

    store = Store(home)
    problems: list[str] = []
    tables = []
    budget = max_bytes
    project = get_settings().project
    for path in _regular_files(io_dir / "otlp", problems):
        size = path.lstat().st_size
        if size > budget:
            problems.append(f"{path.name}: over the trace size cap; skipped")
            continue
        budget -= size
        ctype = _otlp.JSON if ".json" in path.name else _otlp.PROTOBUF
        try:
            body = _otlp.decompress(path.read_bytes(), "gzip" if path.name.endswith(".gz") else "", max_bytes)
            batch = _otlp.decode(body, ctype, default_project=project)
        except Exception as exc:  # MalformedRequest / BodyTooLarge: report, keep the rest
            problems.append(f"{path.name}: {exc}")
            continue
        if batch.rejected:
            problems.append(f"{path.name}: {batch.message}")
        if batch.accepted:
            tables.append(batch.table)
    count = 0
    if tables:
        merged = pa.concat_tables(tables)
        if merged.num_rows > MAX_SPANS:
            problems.append(f"{merged.num_rows} spans; only the first {MAX_SPANS} were kept")
            merged = merged.slice(0, MAX_SPANS)
        idx = merged.schema.get_field_index("experiment_id")
        merged = merged.set_column(idx, "experiment_id", pa.array([experiment_id] * merged.num_rows, pa.string()))
        store.write("spans", merged, durable=True)
        count += merged.num_rows
    for path in _regular_files(io_dir / "spool" / "spans", problems):
        if not path.name.endswith(".parquet"):
            continue
        if path.lstat().st_size > budget:
            problems.append(f"spool {path.name}: over the trace size cap; skipped")
            continue
        budget -= path.lstat().st_size
        try:
            count += store.ingest("spans", [path], overrides={"experiment_id": experiment_id})
        except Exception as exc:  # StoreError or a malformed file: report, keep the rest
            problems.append(f"spool {path.name}: {exc}")
    budget = _ingest_other_tables(store, io_dir / "spool", experiment_id, budget, problems)
    return count, problems


def _ingest_other_tables(store: Any, spool: Path, experiment_id: str, budget: int, problems: list[str]) -> int:
    """Rows of the store's other tables written in the run (e.g. eval_results by an eval), same checks."""
    from .._schema import all_tables

    for name, table in sorted(all_tables().items()):
        if name == "spans":
            continue
        overrides = {"experiment_id": experiment_id} if "experiment_id" in table.column_names() else None
        for path in _regular_files(spool / name, problems):
            if not path.name.endswith(".parquet"):
                continue
            if path.lstat().st_size > budget:
                problems.append(f"spool {name}/{path.name}: over the trace size cap; skipped")
                continue
            budget -= path.lstat().st_size
            try:
                store.ingest(name, [path], overrides=overrides)
            except Exception as exc:  # a malformed file: report, keep the rest
                problems.append(f"spool {name}/{path.name}: {exc}")
    return budget


def _regular_files(folder: Path, problems: list[str]) -> list[Path]:
    """Regular files directly in `folder` (which must be a real folder, not a symlink)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        problems.append(f"{folder.name} was replaced by something that is not a folder; ignored")
        return []
    out = []
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        if e.is_file(follow_symlinks=False):
            out.append(Path(e.path))
        else:
            problems.append(f"{folder.name}/{e.name}: not a regular file; ignored")
    return out
