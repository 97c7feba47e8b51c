"""The collector's OTLP/HTTP endpoint with the real OpenTelemetry exporter: encodings, errors, limits, tokens."""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from tracekit.collector._pipeline import IngestLimits
from tracekit.collector._server import CollectorThread

from tests._support.collector import (
    JSON,
    PROTOBUF,
    ServeProcess,
    json_body,
    make_spans,
    protobuf_body,
    span_ids,
    sql,
    start_thread_server,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CollectorThread]:
    srv = start_thread_server(tmp_path / "home", project="default-proj")
    yield srv
    srv.stop()


def _post(url: str, body: bytes, ctype: str = PROTOBUF, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/traces", content=body, headers={"Content-Type": ctype, **headers}, timeout=30)


def _status(r: httpx.Response) -> Status:
    st = Status()
    if r.headers["content-type"].startswith(JSON):
        st.code, st.message = json.loads(r.content).get("code", 0), json.loads(r.content)["message"]
    else:
        st.ParseFromString(r.content)
    return st


def test_otel_protobuf_exporter_spans_land_in_the_store(server: CollectorThread) -> None:
    spans = make_spans(20, 5, seed=1, resource={"tracekit.project": "from-resource"})
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces")
    assert exporter.export(spans[:40]) is SpanExportResult.SUCCESS
    assert exporter.export(spans[40:]) is SpanExportResult.SUCCESS
    rows = sql(server.url, "SELECT span_id, kind, project, service_name, input, scope FROM spans")
    assert {r["span_id"] for r in rows} == span_ids(spans)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"agent", "llm", "tool"}
    assert {r["project"] for r in rows} == {"from-resource"}
    assert {r["service_name"] for r in rows} == {"svc"}
    assert any(r["input"] == '"question 3"' for r in rows)
    health = httpx.get(server.url + "/health").json()["counters"]
    assert health["spans_accepted"] == 100 and health["spans_rejected"] == 0


def test_gzip_exporter_and_default_project_header(server: CollectorThread) -> None:
    spans = make_spans(10, 4, seed=2)
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces", compression=Compression.Gzip, headers={"x-tracekit-project": "hdr"})
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    r = _post(server.url, zlib.compress(protobuf_body(make_spans(2, 2, seed=3))), **{"Content-Encoding": "deflate"})
    assert r.status_code == 200
    rows = sql(server.url, "SELECT project, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1")
    assert rows == [{"project": "default-proj", "n": 4}, {"project": "hdr", "n": 40}]


def test_json_encoding_with_hex_ids_answers_json(server: CollectorThread) -> None:
    spans = make_spans(3, 3, seed=4)
    r = _post(server.url, json_body(spans), JSON)
    assert r.status_code == 200 and r.headers["content-type"] == JSON
    assert r.json() == {}  # success: partial_success unset
    r = _post(server.url, gzip.compress(json_body(make_spans(1, 2, seed=5))), JSON, **{"Content-Encoding": "gzip"})
    assert r.status_code == 200
    rows = sql(server.url, "SELECT trace_id, span_id, parent_span_id FROM spans")
    sent = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans}
    assert sent <= {(r["trace_id"], r["span_id"]) for r in rows}
    assert len(rows) == 11


def test_partial_success_for_rejected_spans_in_both_encodings(server: CollectorThread) -> None:
    good = make_spans(2, 2, seed=6)
    req = ExportTraceServiceRequest()
    req.ParseFromString(protobuf_body(good))
    bad = req.resource_spans[0].scope_spans[0].spans.add()
    bad.name, bad.trace_id, bad.span_id = "bad ids", b"\x00" * 16, b"\x01" * 8
    r = _post(server.url, req.SerializeToString())
    assert r.status_code == 200
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(r.content)
    assert resp.partial_success.rejected_spans == 1
    assert "trace_id must be 16 bytes" in resp.partial_success.error_message
    doc = json.loads(json_body(make_spans(1, 2, seed=7)))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "abcd"  # 2 bytes: wrong length
    r = _post(server.url, json.dumps(doc).encode(), JSON)
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id must be 8 bytes" in r.json()["partialSuccess"]["errorMessage"]
    assert sql(server.url, "SELECT count(*) AS n FROM spans") == [{"n": 5}]
    assert httpx.get(server.url + "/health").json()["counters"]["spans_rejected"] == 2


def test_empty_request_succeeds(server: CollectorThread) -> None:
    assert _post(server.url, b"").status_code == 200
    r = _post(server.url, b"{}", JSON)
    assert r.status_code == 200 and r.json() == {}


def test_error_statuses_carry_a_status_message_in_the_request_encoding(tmp_path: Path) -> None:
    srv = start_thread_server(tmp_path / "home", max_body_bytes=4096, max_inflight_bytes=4096)
    try:
        url = srv.url
        r = _post(url, b"\xff\xff garbage")
        assert r.status_code == 400 and r.headers["content-type"] == PROTOBUF
        assert "not a protobuf ExportTraceServiceRequest" in _status(r).message and _status(r).code == 3
        r = _post(url, b"{not json", JSON)
        assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
        r = _post(url, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON)
        assert r.status_code == 400 and "is not hex" in r.json()["message"]
        r = _post(url, b'{"resourceSpans": 3}', JSON)
        assert r.status_code == 400 and "must be a list" in r.json()["message"]
        r = _post(url, b"hello", "text/plain")
        assert r.status_code == 415 and "application/x-protobuf" in r.json()["message"]
        r = _post(url, protobuf_body(make_spans(1, 1)), PROTOBUF, **{"Content-Encoding": "br"})
        assert r.status_code == 415 and "gzip" in _status(r).message
        r = _post(url, b"x" * 5000)
        assert r.status_code == 413 and "limit of 4096" in _status(r).message
        bomb = gzip.compress(b"\x00" * 100_000)
        assert len(bomb) < 4096
        r = _post(url, bomb, PROTOBUF, **{"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompresses" in _status(r).message
        r = _post(url, gzip.compress(b"abc")[:-6], PROTOBUF, **{"Content-Encoding": "gzip"})
        assert r.status_code == 400 and "truncated" in _status(r).message
        r = httpx.get(url + "/v1/traces")
        assert r.status_code == 405
        counts = httpx.get(url + "/health").json()["counters"]["requests_by_status"]
        assert counts["400"] == 5 and counts["413"] == 2 and counts["415"] == 2
    finally:
        srv.stop()


def test_overload_answers_503_with_retry_after_then_recovers(tmp_path: Path) -> None:
    limits = IngestLimits(fold_interval=3600, fold_rows=10**9, max_queued_spans=10)
    srv = start_thread_server(tmp_path / "home", ingest=limits)
    try:
        assert _post(srv.url, protobuf_body(make_spans(3, 4, seed=8))).status_code == 200  # 12 queued
        r = _post(srv.url, protobuf_body(make_spans(1, 1, seed=9)))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert "behind writing Parquet" in _status(r).message
        assert httpx.get(srv.url + "/health").json()["counters"]["spans_queued"] == 12
        assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 12}]  # a read folds first
        exporter = OTLPSpanExporter(endpoint=srv.url + "/v1/traces")
        assert exporter.export(make_spans(1, 1, seed=10)) is SpanExportResult.SUCCESS
    finally:
        srv.stop()


def test_too_many_bytes_in_flight_answers_429(tmp_path: Path) -> None:
    srv = start_thread_server(tmp_path / "home", max_body_bytes=8192, max_inflight_bytes=8192)
    host, port = srv.url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)))
    try:
        slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 8000\r\n\r\n")
        slow.sendall(b"\x0a" * 6000)  # the server holds these bytes while it waits for the rest
        deadline = time.monotonic() + 10
        while True:
            r = _post(srv.url, b"\x00" * 3000)
            if r.status_code == 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert "in flight" in _status(r).message
    finally:
        slow.close()
        srv.stop()


def test_tokens_separate_ingest_and_read(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# scopes\ningest ingest-token-0123456789\nread read-token-0123456789ab\n")
    tokens.chmod(0o600)
    proc = ServeProcess(tmp_path / "home", env={"TRACEKIT_TOKEN": "admin-token-0123456789", "TRACEKIT_TOKENS_FILE": str(tokens)})
    try:
        url = proc.url
        body = protobuf_body(make_spans(2, 2, seed=11))
        assert httpx.get(url + "/health").status_code == 200  # health needs no token
        r = _post(url, body)
        assert r.status_code == 401 and "Bearer" in _status(r).message
        assert _post(url, body, Authorization="Bearer wrong-token-0123456789").status_code == 401
        assert _post(url, body, Authorization="Bearer read-token-0123456789ab").status_code == 403
        exporter = OTLPSpanExporter(endpoint=url + "/v1/traces", headers={"Authorization": "Bearer ingest-token-0123456789"})
        assert exporter.export(make_spans(2, 2, seed=12)) is SpanExportResult.SUCCESS
        q = {"sql": "SELECT count(*) AS n FROM spans"}
        r = httpx.post(url + "/api/sql", json=q)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(url + "/api/sql", json=q, headers={"Authorization": "Bearer ingest-token-0123456789"})
        assert r.status_code == 403 and "read" in r.json()["message"]
        assert httpx.get(url + "/api/traces", headers={"Authorization": "Bearer ingest-token-0123456789"}).status_code == 403
        assert sql(url, q["sql"], token="read-token-0123456789ab") == [{"n": 4}]
        assert sql(url, q["sql"], token="admin-token-0123456789") == [{"n": 4}]
        assert _post(url, body, Authorization="Bearer admin-token-0123456789").status_code == 200
    finally:
        assert proc.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_serve_cli_env_mirrors_and_graceful_stop_folds_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = ServeProcess(home, env={"TRACEKIT_PROJECT": "env-proj", "TRACEKIT_MAX_BODY_MB": "0.01"})
    try:
        assert _post(proc.url, b"x" * 20000).status_code == 413
        assert _post(proc.url, protobuf_body(make_spans(2, 3, seed=13))).status_code == 200
    finally:
        assert proc.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert not list((home / "_collector" / "wal").glob("wal-*.log"))  # folded at shutdown
    from tracekit.store._store import Store

    table = Store(home).read("spans")
    assert table.num_rows == 6 and set(table.column("project").to_pylist()) == {"env-proj"}
    first = ServeProcess(home)  # a second server on the same home is refused while one runs
    try:
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-m", "tracekit", "serve", "--home", str(home), "--port", "0"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "another tracekit collector is serving" in out.stdout + out.stderr
    finally:
        first.stop()


def test_each_resource_keeps_its_own_attributes(server: CollectorThread) -> None:
    req = ExportTraceServiceRequest()
    for i in range(30):  # many short-lived resources in one request
        one = ExportTraceServiceRequest()
        one.ParseFromString(protobuf_body(make_spans(1, 1, seed=200 + i, service=f"svc-{i}")))
        req.resource_spans.extend(one.resource_spans)
    odd = req.resource_spans.add()
    odd.resource.attributes.add(key="service.name").value.array_value.values.add(string_value="a-list")
    s = odd.scope_spans.add().spans.add(name="listy", trace_id=b"\x02" * 16, span_id=b"\x02" * 8)
    assert s.name == "listy"
    assert _post(server.url, req.SerializeToString()).status_code == 200
    rows = sql(server.url, "SELECT service_name, resource FROM spans")
    assert len(rows) == 31
    for r in rows:
        assert json.loads(r["resource"])["service.name"] in (r["service_name"], ["a-list"])
    assert {r["service_name"] for r in rows} == {f"svc-{i}" for i in range(30)} | {'["a-list"]'}


def test_config_and_token_errors_say_what_to_do(tmp_path: Path) -> None:
    from tracekit._errors import ConfigError
    from tracekit.collector import CollectorConfig
    from tracekit.collector._auth import Tokens

    with pytest.raises(ConfigError, match="TRACEKIT_PORT='x': expected a whole number"):
        CollectorConfig.from_env({"TRACEKIT_PORT": "x"})
    with pytest.raises(ConfigError, match="below the body limit"):
        CollectorConfig.from_env({}, max_body_bytes=1 << 20, max_inflight_bytes=1000)
    with pytest.raises(ConfigError, match="at least 16"):
        Tokens.from_env({"TRACEKIT_TOKEN": "short"})
    tokens = tmp_path / "tokens"
    tokens.write_text("ingest abcdefghijklmnopqrstuvwxyz\n")
    tokens.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Tokens.from_env({}, tokens)
    tokens.chmod(0o600)
    tokens.write_text("write abcdefghijklmnopqrstuvwxyz\n")
    with pytest.raises(ConfigError, match="line 1: expected '<ingest|read|all> <token>'"):
        Tokens.from_env({}, tokens)
    t = Tokens.from_env({"TRACEKIT_READ_TOKEN": "r" * 20, "TRACEKIT_INGEST_TOKEN": "i" * 20})
    assert t.scopes_for("Bearer " + "r" * 20) == frozenset({"read"})
    assert t.scopes_for("bearer " + "i" * 20) == frozenset({"ingest"})
    assert t.scopes_for("Basic " + "r" * 20) is None and t.scopes_for(None) is None and t.scopes_for("Bearer ") is None
    config = CollectorConfig.from_env({"TRACEKIT_HOST": "0.0.0.0", "TRACEKIT_SQL_MAX_ROWS": "50", "TRACEKIT_HOME": str(tmp_path)})
    assert config.host == "0.0.0.0" and not config.loopback and config.sql.max_rows == 50 and config.sql.default_rows == 50


def test_otel_exporter_waits_out_a_503_and_delivers(tmp_path: Path) -> None:
    limits = IngestLimits(fold_interval=1.5, fold_rows=10**9, max_queued_spans=10)
    srv = start_thread_server(tmp_path / "home", ingest=limits)
    try:
        assert _post(srv.url, protobuf_body(make_spans(3, 4, seed=300))).status_code == 200  # 12 queued: full
        exporter = OTLPSpanExporter(endpoint=srv.url + "/v1/traces", timeout=30)
        spans = make_spans(2, 2, seed=301)
        assert exporter.export(spans) is SpanExportResult.SUCCESS  # 503, Retry-After: 1, then 200 after the fold
        counters = httpx.get(srv.url + "/health").json()["counters"]
        assert counters["requests_by_status"].get("503", 0) >= 1 and counters["spans_accepted"] == 16
        assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 16}]
    finally:
        srv.stop()
