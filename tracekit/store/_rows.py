"""Turn spans from any source into rows of the `spans` table.

Two producers share this: the in-process Parquet exporter (OTel SDK `ReadableSpan`s) and the OTLP
collector (decoded protobuf or JSON). Both build a `RawSpan` and call `spans_table()`. Raw attributes
are kept as they came (in the `attributes` JSON column) except the few promoted to columns:
`tracekit.kind`, `tracekit.project`, `tracekit.experiment_id`, and `tracekit.input` /
`tracekit.output` or else OpenInference's `input.value` / `output.value` (with their mime types),
which become the `input` / `output` columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

KIND_ATTR = "tracekit.kind"
PROJECT_ATTR = "tracekit.project"
EXPERIMENT_ATTR = "tracekit.experiment_id"
INPUT_ATTR = "tracekit.input"  # JSON text
OUTPUT_ATTR = "tracekit.output"  # JSON text
IO_ATTR = {"input": INPUT_ATTR, "output": OUTPUT_ATTR}
KINDS = ("agent", "llm", "tool", "chain", "eval", "run", "retriever", "embedding", "span")

_OI_KINDS = {
    "AGENT": "agent",
    "LLM": "llm",
    "TOOL": "tool",
    "CHAIN": "chain",
    "EVALUATOR": "eval",
    "RETRIEVER": "retriever",
    "RERANKER": "retriever",
    "EMBEDDING": "embedding",
}
_GENAI_OPS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "chain",
    "retrieval": "retriever",
}
_SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "ok", 1: "ok", 2: "error"}  # OpenTelemetry UNSET, OK, ERROR: a span either failed or not


@dataclass
class RawSpan:
    """A span as any producer sees it; ids as ints or hex strings, times in ns since the epoch."""

    trace_id: int | str
    span_id: int | str
    parent_span_id: int | str | None
    name: str
    start_ns: int
    end_ns: int
    span_kind: int | str = 1
    status_code: int | str = 0
    status_message: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[tuple[int, str, Mapping[str, Any]]] = ()
    links: Sequence[tuple[int | str, int | str, Mapping[str, Any]]] = ()
    resource: Mapping[str, Any] = field(default_factory=dict)
    scope: str | None = None


def _hex(value: int | str | None, width: int) -> str | None:
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, int):
        return format(value, f"0{width}x")
    return value.lower()


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)  # reused: cheaper


def _json(value: Mapping[str, Any]) -> str:
    if not isinstance(value, dict):
        value = dict(value)  # OTel's BoundedAttributes is a Mapping, not a dict
    if not value:
        return "{}"
    try:
        return _ENCODER.encode(value)
    except ValueError:  # NaN / inf in an attribute: keep them as strings rather than invalid JSON
        return json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _resource_json(resource: Mapping[str, Any], cache: dict[int, str] | None) -> str:
    if cache is None:
        return _json(resource)
    key = id(resource)
    text = cache.get(key)
    if text is None:
        text = cache[key] = _json(resource)
    return text


def _text(value: Any) -> str | None:
    """A string column from any attribute value (OTLP lets senders put lists or numbers anywhere)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(_finite(value), ensure_ascii=False, default=str)


def derive_kind(attrs: Mapping[str, Any]) -> str:
    kind = attrs.get(KIND_ATTR)
    if isinstance(kind, str) and kind:
        return kind
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OI_KINDS:
        return _OI_KINDS[oi.upper()]
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op in _GENAI_OPS:
        return _GENAI_OPS[op]
    if "gen_ai.system" in attrs or "gen_ai.provider.name" in attrs or "llm.request.type" in attrs:
        return "llm"
    tl = attrs.get("traceloop.span.kind")
    if tl == "tool":
        return "tool"
    if tl in ("agent",):
        return "agent"
    if tl in ("workflow", "task"):
        return "chain"
    return "span"


def _io(attrs: dict[str, Any], key: str) -> str | None:
    ours = attrs.pop(IO_ATTR[key], None)
    if isinstance(ours, str):
        return ours  # tracekit's decorators always write JSON text here
    value = attrs.pop(f"{key}.value", None)
    mime = attrs.pop(f"{key}.mime_type", None)
    if value is None:
        return None
    if not isinstance(value, str):
        return json.dumps(_finite(value), ensure_ascii=False, default=str)
    if mime == "application/json":
        if value[:1] in "{[\"" or value in ("null", "true", "false") or value[:1].isdigit() or value[:1] == "-":
            return value  # trusted as JSON text: tracekit's decorators and OpenInference both write valid JSON here
    return json.dumps(value, ensure_ascii=False)


def span_row(raw: RawSpan, default_project: str | None = None, resource_cache: dict[int, str] | None = None) -> dict[str, Any]:
    """One `spans` row. Pass the same `resource_cache` dict for a batch: spans share resources."""
    attrs = dict(raw.attributes)
    kind = derive_kind(attrs)
    attrs.pop(KIND_ATTR, None)
    project = attrs.pop(PROJECT_ATTR, None) or raw.resource.get(PROJECT_ATTR) or default_project
    experiment = attrs.pop(EXPERIMENT_ATTR, None) or raw.resource.get(EXPERIMENT_ATTR)
    inp = _io(attrs, "input")
    out = _io(attrs, "output")
    span_kind = raw.span_kind if isinstance(raw.span_kind, str) else _SPAN_KINDS.get(raw.span_kind, "internal")
    status = raw.status_code if isinstance(raw.status_code, str) else _STATUS.get(raw.status_code, "ok")
    return {
        "trace_id": _hex(raw.trace_id, 32),
        "span_id": _hex(raw.span_id, 16),
        "parent_span_id": _hex(raw.parent_span_id, 16),
        "name": raw.name,
        "kind": kind,
        "span_kind": span_kind,
        "start_us": raw.start_ns // 1000,
        "end_us": raw.end_ns // 1000,
        "duration_ms": (raw.end_ns - raw.start_ns) / 1e6,
        "status": status,
        "status_message": raw.status_message or None,
        "service_name": _text(raw.resource.get("service.name")),
        "project": str(project) if project is not None else None,
        "experiment_id": str(experiment) if experiment is not None else None,
        "input": inp,
        "output": out,
        "attributes": _json(attrs),
        "events": [{"time": t // 1000, "name": n, "attributes": _json(a)} for t, n, a in raw.events],
        "links": [
            {"trace_id": _hex(t, 32), "span_id": _hex(s, 16), "attributes": _json(a)} for t, s, a in raw.links
        ],
        "resource": _resource_json(raw.resource, resource_cache),
        "scope": raw.scope,
    }


def spans_table(rows: Sequence[Mapping[str, Any]]) -> "pa.Table":
    """Rows from `span_row` as an Arrow table in the `spans` schema (column-wise: fast)."""
    import pyarrow as pa

    from ._tables import SPANS

    schema = SPANS.arrow_schema()
    cols: dict[str, Any] = {}
    for f in schema:
        src = {"start_time": "start_us", "end_time": "end_us"}.get(f.name, f.name)
        cols[f.name] = pa.array([r[src] for r in rows], type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)
