"""Fuzzed OTLP bodies (Hypothesis) never crash the collector: every answer is a 200 or a 4xx with a message."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tracekit.collector._server import CollectorThread

from tests._support.collector import JSON, PROTOBUF, start_thread_server

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorThread]:
    srv = start_thread_server(tmp_path_factory.mktemp("fuzz") / "home", max_body_bytes=256 * 1024)
    yield srv
    health = httpx.get(srv.url + "/health").json()
    assert health["status"] == "ok" and health["counters"]["commit_errors"] == 0 and health["counters"]["fold_errors"] == 0
    assert "500" not in health["counters"]["requests_by_status"]
    srv.stop()


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    r = httpx.post(url + "/v1/traces", content=body, headers=headers, timeout=60)
    assert r.status_code in (200, 400, 413, 415), (r.status_code, r.content[:300])
    if r.status_code != 200:
        assert r.content  # a google.rpc.Status with a message
    return r


CTYPES = st.sampled_from([PROTOBUF, JSON, "application/x-protobuf; charset=binary", "text/plain", "", "application/grpc"])
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "identity", "br"])


@SETTINGS
@given(body=st.binary(max_size=4096), ctype=CTYPES, encoding=ENCODINGS, wrap=st.booleans())
def test_random_bytes(server: CollectorThread, body: bytes, ctype: str, encoding: str, wrap: bool) -> None:
    if wrap and encoding == "gzip":
        body = gzip.compress(body)
    headers = {"Content-Type": ctype} if ctype else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    _post(server.url, body, headers)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name", "kind", "attributes",
         "key", "value", "stringValue", "intValue", "startTimeUnixNano", "events", "links", "status", "code", "x"]), inner, max_size=5),
    max_leaves=40,
)


@SETTINGS
@given(doc=JSON_VALUES)
def test_random_json_documents(server: CollectorThread, doc: Any) -> None:
    _post(server.url, json.dumps(doc).encode(), {"Content-Type": JSON})


ANY_VALUE = st.recursive(
    st.builds(lambda s: AnyValue(string_value=s), st.text(max_size=30))
    | st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1))
    | st.builds(lambda d: AnyValue(double_value=d), st.floats())
    | st.builds(lambda b: AnyValue(bool_value=b), st.booleans())
    | st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=16))
    | st.just(AnyValue()),
    lambda inner: st.builds(lambda vs: _array(vs), st.lists(inner, max_size=3))
    | st.builds(lambda kv: _kvlist(kv), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


def _array(values: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.values.extend(values)
    return v


def _kvlist(items: dict[str, AnyValue]) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.values.extend(KeyValue(key=k, value=x) for k, x in items.items())
    return v


SPAN = st.fixed_dictionaries({
    "trace_id": st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
    "span_id": st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=10)),
    "parent_span_id": st.one_of(st.just(b""), st.binary(min_size=8, max_size=8), st.binary(max_size=9)),
    "name": st.text(max_size=40),
    "kind": st.integers(0, 9),
    "start": st.integers(0, 2**64 - 1),
    "end": st.integers(0, 2**64 - 1),
    "status": st.integers(0, 5),
    "attrs": st.dictionaries(st.text(max_size=30), ANY_VALUE, max_size=6),
    "events": st.lists(st.tuples(st.integers(0, 2**64 - 1), st.text(max_size=10)), max_size=2),
})


@SETTINGS
@given(spans=st.lists(SPAN, max_size=8), resource=st.dictionaries(st.sampled_from(["service.name", "tracekit.project", "openinference.project.name", "x"]), ANY_VALUE, max_size=3), as_json=st.booleans())
def test_structured_requests_account_for_every_span(server: CollectorThread, spans: list[dict[str, Any]], resource: dict[str, AnyValue], as_json: bool) -> None:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in resource.items())
    out = rs.scope_spans.add().spans
    for d in spans:
        s = out.add()
        s.trace_id, s.span_id, s.parent_span_id, s.name = d["trace_id"], d["span_id"], d["parent_span_id"], d["name"]
        s.kind, s.start_time_unix_nano, s.end_time_unix_nano, s.status.code = d["kind"], d["start"], d["end"], d["status"]
        s.attributes.extend(KeyValue(key=k, value=v) for k, v in d["attrs"].items())
        for t, n in d["events"]:
            s.events.add(time_unix_nano=t, name=n)
    if as_json:
        from google.protobuf import json_format

        doc = json_format.MessageToDict(req)
        for r in doc.get("resourceSpans", []):
            for ss in r.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in sp:
                            import base64

                            sp[key] = base64.b64decode(sp[key]).hex()
        r = _post(server.url, json.dumps(doc).encode(), {"Content-Type": JSON})
        assert r.status_code == 200, r.text
        rejected = int(r.json().get("partialSuccess", {}).get("rejectedSpans", 0))
    else:
        r = _post(server.url, req.SerializeToString(), {"Content-Type": PROTOBUF})
        assert r.status_code == 200
        resp = ExportTraceServiceResponse()
        resp.ParseFromString(r.content)
        rejected = resp.partial_success.rejected_spans
    valid = sum(
        1 for d in spans
        if len(d["trace_id"]) == 16 and any(d["trace_id"]) and len(d["span_id"]) == 8 and any(d["span_id"])
        and len(d["parent_span_id"]) in (0, 8) and max(d["start"], d["end"], *(t for t, _ in d["events"])) <= 253402300799 * 10**9
    )
    assert rejected == len(spans) - valid


def test_store_stays_queryable_after_fuzzing(server: CollectorThread) -> None:
    r = httpx.post(server.url + "/api/sql", json={"sql": "SELECT count(*) AS n, count(DISTINCT name) AS names FROM spans"}, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/api/sql", json={"sql": "SELECT * FROM spans", "limit": 100000}, timeout=60)
    assert r.status_code == 200, r.text  # every stored row serialises to JSON
