"""Traces of a run: the `run` span (with the result) and spans the candidate emitted inside.

Inside, the candidate has `TRACEKIT_HOME` = a spool folder (tracekit writes Parquet there) and
`OTEL_EXPORTER_OTLP_ENDPOINT` = the shim's loopback receiver (any OpenTelemetry SDK posts OTLP
there). After the run both are read back here, never trusted: no symlinks, size caps, ids checked,
every row re-tagged with the run's experiment_id, then written to the real store.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._config import get_settings, get_tracer
from .._decorators import METRIC_EVENT, SpanHandle
from .._spanrows import KIND_ATTR, RawSpan, span_row, spans_table

if TYPE_CHECKING:
    from ._spec import RunResult

_TRACE = re.compile(r"^[0-9a-f]{32}$")
_SPAN = re.compile(r"^[0-9a-f]{16}$")
MAX_SPANS = 200_000
_private: dict[str, otel_trace.Tracer] = {}


def _tracer_for(home: Path) -> tuple[otel_trace.Tracer, bool]:
    """(tracer, is_global): tracekit's own tracer when `home` is the configured home, else a private one."""
    settings = get_settings()
    if Path(settings.home).resolve() == home.resolve():
        return get_tracer(), True
    key = str(home.resolve())
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
    return _private[key], False


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
        self.trace_id = format(sc.trace_id, "032x")
        self.span_id = format(sc.span_id, "016x")

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"

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
    """Copy the run's spans (OTLP bodies and tracekit Parquet) into `home`; (rows, problems)."""
    from .._store import Store

    store = Store(home)
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    budget = max_bytes
    for path in _regular_files(io_dir / "otlp", problems):
        size = path.lstat().st_size
        if size > budget:
            problems.append(f"{path.name}: over the trace size cap; skipped")
            continue
        budget -= size
        try:
            raws = decode_otlp(path.read_bytes(), path.name, max_bytes)
        except ValueError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        project = get_settings().project
        for raw in raws:
            if len(rows) >= MAX_SPANS:
                problems.append(f"more than {MAX_SPANS} spans; the rest were dropped")
                break
            row = span_row(raw, project)
            row["experiment_id"] = experiment_id
            rows.append(row)
    count = 0
    if rows:
        store.write("spans", spans_table(rows), durable=True)
        count += len(rows)
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
    return count, problems


def _regular_files(folder: Path, problems: list[str]) -> list[Path]:
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


def decode_otlp(data: bytes, name: str, max_bytes: int) -> list[RawSpan]:
    """Spans of one OTLP/HTTP request body (protobuf or JSON, optionally gzip)."""
    if name.endswith(".gz"):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = d.decompress(data, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"bad gzip body ({exc})") from exc
        if len(data) > max_bytes:
            raise ValueError("decompressed body is over the trace size cap")
    if ".json" in name:
        try:
            return _from_json(json.loads(data))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not OTLP JSON ({exc})") from exc
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not OTLP protobuf ({exc})") from exc
    out = []
    for rs in req.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                raw = RawSpan(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex() or None,
                    name=s.name, start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano, span_kind=s.kind,
                    status_code=s.status.code, status_message=s.status.message or None,
                    attributes={kv.key: _pb_value(kv.value) for kv in s.attributes},
                    events=[(e.time_unix_nano, e.name, {kv.key: _pb_value(kv.value) for kv in e.attributes}) for e in s.events],
                    links=[(ln.trace_id.hex(), ln.span_id.hex(), {kv.key: _pb_value(kv.value) for kv in ln.attributes}) for ln in s.links],
                    resource=resource, scope=ss.scope.name or None,
                )
                if _valid(raw):
                    out.append(raw)
    return out


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _json_value(v: dict[str, Any]) -> Any:
    for key, val in v.items():
        if key == "arrayValue":
            return [_json_value(x) for x in val.get("values", [])]
        if key == "kvlistValue":
            return {kv["key"]: _json_value(kv.get("value", {})) for kv in val.get("values", [])}
        if key == "intValue":
            return int(val)
        if key == "doubleValue":
            return float(val)
        return val
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _json_value(kv.get("value", {})) for kv in items or []}


def _from_json(doc: dict[str, Any]) -> list[RawSpan]:
    out = []
    for rs in doc.get("resourceSpans", []):
        resource = _attrs(rs.get("resource", {}).get("attributes"))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {}).get("name")
            for s in ss.get("spans", []):
                status = s.get("status", {})
                raw = RawSpan(
                    trace_id=str(s.get("traceId", "")).lower(), span_id=str(s.get("spanId", "")).lower(),
                    parent_span_id=str(s.get("parentSpanId") or "").lower() or None, name=str(s.get("name", "")),
                    start_ns=int(s.get("startTimeUnixNano", 0)), end_ns=int(s.get("endTimeUnixNano", 0)),
                    span_kind=int(s.get("kind", 1)), status_code=int(status.get("code", 0)),
                    status_message=status.get("message") or None, attributes=_attrs(s.get("attributes")),
                    events=[(int(e.get("timeUnixNano", 0)), str(e.get("name", "")), _attrs(e.get("attributes"))) for e in s.get("events", [])],
                    links=[(str(ln.get("traceId", "")), str(ln.get("spanId", "")), _attrs(ln.get("attributes"))) for ln in s.get("links", [])],
                    resource=resource, scope=scope,
                )
                if _valid(raw):
                    out.append(raw)
    return out


def _valid(raw: RawSpan) -> bool:
    ok_ids = isinstance(raw.trace_id, str) and _TRACE.match(raw.trace_id) and isinstance(raw.span_id, str) and _SPAN.match(raw.span_id)
    parent_ok = raw.parent_span_id is None or (isinstance(raw.parent_span_id, str) and bool(_SPAN.match(raw.parent_span_id)))
    times_ok = 0 < raw.start_ns <= raw.end_ns < 2**62
    nonzero = raw.trace_id != "0" * 32 and raw.span_id != "0" * 16
    return bool(ok_ids and parent_ok and times_ok and nonzero and raw.name)
