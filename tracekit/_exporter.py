"""An OpenTelemetry `SpanExporter` that writes finished spans to the local Parquet store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .store._rows import RawSpan, span_row, spans_table

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .store._store import Store

log = logging.getLogger("tracekit")


def raw_from_readable(span: "ReadableSpan", resources: dict[int, Any] | None = None) -> RawSpan:
    ctx = span.context
    parent = span.parent
    status = span.status
    return RawSpan(
        trace_id=ctx.trace_id,
        span_id=ctx.span_id,
        parent_span_id=parent.span_id if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        span_kind=span.kind.value + 1,  # SDK SpanKind.INTERNAL == 0; OTLP INTERNAL == 1
        status_code=status.status_code.value if status is not None else 0,
        status_message=status.description if status is not None else None,
        attributes=span.attributes or {},
        events=[(e.timestamp, e.name, e.attributes or {}) for e in span.events],
        links=[(ln.context.trace_id, ln.context.span_id, ln.attributes or {}) for ln in span.links],
        resource=_resource(span, resources),
        scope=span.instrumentation_scope.name if span.instrumentation_scope is not None else None,
    )


def _resource(span: "ReadableSpan", cache: dict[int, Any] | None) -> Any:
    res = span.resource
    if res is None:
        return {}
    if cache is None:
        return dict(res.attributes)
    got = cache.get(id(res))
    if got is None:
        got = cache[id(res)] = dict(res.attributes)  # one dict per Resource object: the row cache keys on it
    return got


class ParquetSpanExporter(SpanExporter):
    """Writes each exported batch as one new Parquet file of the `spans` table."""

    def __init__(self, store: "Store", default_project: str | None = None) -> None:
        self.store = store
        self.default_project = default_project
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence["ReadableSpan"]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            resources: dict[int, Any] = {}
            row_cache: dict[int, str] = {}
            rows = [span_row(raw_from_readable(s, resources), self.default_project, row_cache) for s in spans]
            self.store.write("spans", spans_table(rows))
        except Exception:
            self.failed += len(spans)
            log.exception("tracekit: could not write %d spans to %s", len(spans), self.store.home)
            return SpanExportResult.FAILURE
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def __repr__(self) -> str:
        return f"ParquetSpanExporter({self.store!r})"

    def stats(self) -> dict[str, Any]:
        return {"exported": self.exported, "failed": self.failed}
