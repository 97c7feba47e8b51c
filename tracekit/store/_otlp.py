"""OTLP/HTTP trace requests in and responses out: protobuf or JSON, gzip/deflate or plain.

    body = decompress(raw, "gzip", limit=64 << 20)            # BodyTooLarge past the limit
    batch = decode(body, "application/json", default_project="p")  # MalformedRequest on bad input
    batch.table        # Arrow `spans` rows, built by tracekit.store._rows (the one converter)
    batch.rejected     # spans refused one by one (bad ids, times): reported as partial_success
    encode_response(batch.rejected, batch.message, "application/json")

JSON follows the OTLP specification: trace and span ids are hex strings (rewritten to base64
before `google.protobuf.json_format` parses them), enums are integers, int64 may be strings and
unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import CollectorError
from .._util.jsonutil import loads_limited
from ._rows import RawSpan, span_row, spans_table

if TYPE_CHECKING:
    import pyarrow as pa

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)
ENCODINGS = ("", "identity", "gzip", "x-gzip", "deflate")
MAX_NS = 253402300799 * 10**9  # 9999-12-31T23:59:59Z: the last instant a timestamp column can show


class MalformedRequest(CollectorError):
    """The body is not an ExportTraceServiceRequest in the declared encoding (HTTP 400)."""


class BodyTooLarge(CollectorError):
    """The body, before or after decompression, is over the size limit (HTTP 413)."""


@dataclass
class DecodedBatch:
    table: "pa.Table"
    accepted: int
    rejected: int
    message: str


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding, refusing output past `limit` bytes (a gzip bomb stops at the limit)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise BodyTooLarge(f"body of {len(body)} bytes is over the limit of {limit} bytes")
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise CollectorError(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise BodyTooLarge(f"body decompresses to more than the limit of {limit} bytes")
        if not d.eof:
            raise MalformedRequest(f"{encoding} body is truncated")
    except zlib.error as exc:
        raise MalformedRequest(f"body is not valid {encoding} data ({exc})") from None
    return out


def parse(body: bytes, content_type: str) -> Any:
    """The ExportTraceServiceRequest message in `body` (protobuf bytes or OTLP/JSON text)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except Exception as exc:  # google.protobuf.message.DecodeError, or RecursionError on deep nesting
            raise MalformedRequest(f"body is not a protobuf ExportTraceServiceRequest ({type(exc).__name__}: {exc})") from None
        return request
    from google.protobuf import json_format

    try:
        data = loads_limited(body) if body.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedRequest("OTLP/JSON body must be an object with a 'resourceSpans' list")
    _hex_ids_to_base64(data)
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise MalformedRequest(f"body is not an OTLP/JSON ExportTraceServiceRequest ({exc})") from None
    return request


_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON ids are hex; protobuf's JSON mapping wants base64 for bytes: rewrite them in place."""

    def fix(obj: dict[str, Any], where: str) -> None:
        for key in _ID_KEYS:
            value = obj.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise MalformedRequest(f"{where}.{key} must be a hex string, got {type(value).__name__}")
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise MalformedRequest(f"{where}.{key} {value[:40]!r} is not hex (OTLP/JSON ids are hex strings)") from None

    for i, rs in enumerate(_items(data, "resourceSpans", "resource_spans", "body")):
        for j, ss in enumerate(_items(rs, "scopeSpans", "scope_spans", f"resourceSpans[{i}]")):
            for k, span in enumerate(_items(ss, "spans", "spans", f"resourceSpans[{i}].scopeSpans[{j}]")):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                fix(span, where)
                for m, link in enumerate(_items(span, "links", "links", where)):
                    fix(link, f"{where}.links[{m}]")


def _items(obj: Any, key: str, alt: str, where: str) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        raise MalformedRequest(f"{where} must be an object")
    value = obj.get(key, obj.get(alt))
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MalformedRequest(f"{where}.{key} must be a list of objects")
    return value


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _span_problem(span: Any) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"trace_id must be 16 bytes, not all zero (got {binascii.hexlify(span.trace_id[:32]).decode()!r})"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span_id must be 8 bytes, not all zero (got {binascii.hexlify(span.span_id[:32]).decode()!r})"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes (got {len(span.parent_span_id)} bytes)"
    if span.start_time_unix_nano > MAX_NS or span.end_time_unix_nano > MAX_NS:
        return "start/end time is past the year 9999"
    if any(e.time_unix_nano > MAX_NS for e in span.events):
        return "an event time is past the year 9999"
    return None


def raw_spans(request: Any, default_project: str | None) -> tuple[list[dict[str, Any]], int, str]:
    """`spans` rows for every valid span of `request`; (rows, rejected count, first rejection reason)."""
    rows: list[dict[str, Any]] = []
    resource_cache: dict[int, str] = {}  # one JSON encoding per resource, not per span (keyed by id():
    resources: list[dict[str, Any]] = []  # so every resource dict stays alive until the batch is done)
    rejected = 0
    reason = ""
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        resources.append(resource)
        oi_project = resource.get("openinference.project.name")  # Phoenix's resource attribute
        project = oi_project if isinstance(oi_project, str) and oi_project else default_project
        for ss in rs.scope_spans:
            scope = ss.scope.name or None
            for span in ss.spans:
                problem = _span_problem(span)
                if problem is not None:
                    rejected += 1
                    reason = reason or f"span {span.name[:80]!r}: {problem}"
                    continue
                status = span.status
                raw = RawSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    span_kind=span.kind,
                    status_code=status.code,
                    status_message=status.message or None,
                    attributes=_attrs(span.attributes),
                    events=[(e.time_unix_nano, e.name, _attrs(e.attributes)) for e in span.events],
                    links=[(ln.trace_id.hex(), ln.span_id.hex(), _attrs(ln.attributes)) for ln in span.links],
                    resource=resource,
                    scope=scope,
                )
                rows.append(span_row(raw, project, resource_cache))
    return rows, rejected, reason


def decode(body: bytes, content_type: str, *, default_project: str | None = None) -> DecodedBatch:
    """Parse and convert one request body; MalformedRequest if the body as a whole is unusable."""
    request = parse(body, content_type)
    rows, rejected, reason = raw_spans(request, default_project)
    message = f"{rejected} span(s) rejected; first: {reason}" if rejected else ""
    return DecodedBatch(spans_table(rows), len(rows), rejected, message)


def encode_response(rejected: int, message: str, content_type: str) -> bytes:
    """An ExportTraceServiceResponse; partial_success is set only when something was rejected."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return _serialize(response, content_type)


def encode_status(code: int, message: str, content_type: str) -> bytes:
    """A google.rpc.Status body (the OTLP error response) with the gRPC `code` and a message."""
    from google.rpc.status_pb2 import Status

    return _serialize(Status(code=code, message=message), content_type)


def _serialize(message: Any, content_type: str) -> bytes:
    if content_type == PROTOBUF:
        return bytes(message.SerializeToString())
    from google.protobuf import json_format

    return json_format.MessageToJson(message, indent=None).encode()
