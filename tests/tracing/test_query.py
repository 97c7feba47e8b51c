"""SQL over the store through the facade (tracekit.query, views), spans of other OTel code, the OTLP exporter, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tracekit
from tracekit._errors import QueryError

from tests._support.traced import agent


def test_query_returns_relation_convertible(home: Path) -> None:
    agent([1, -1, 2])
    rel = tracekit.query("SELECT name, kind FROM spans ORDER BY start_time")
    assert rel.fetchall()[0] == ("agent", "agent")
    assert rel.arrow().read_all().num_rows == 4 and rel.to_arrow_table().num_rows == 4
    assert rel.pl().height == 4
    assert len(rel.df()) == 4


def test_traces_view(home: Path) -> None:
    agent([1, -1, 2])
    agent([5])
    t = tracekit.query("SELECT name, kind, span_count, error_count, status, input FROM traces ORDER BY start_time").fetchall()
    assert t == [
        ("agent", "agent", 4, 1, "error", '{"xs":[1,-1,2]}'),
        ("agent", "agent", 2, 0, "ok", '{"xs":[5]}'),
    ]
    root = tracekit.query("SELECT root_span_id FROM traces LIMIT 1").fetchall()[0][0]
    assert tracekit.query(f"SELECT parent_span_id FROM spans WHERE span_id = '{root}'").fetchall() == [(None,)]


def test_bad_query_names_tables_and_columns(home: Path) -> None:
    agent([1])
    with pytest.raises(QueryError) as info:
        tracekit.query("SELECT nme FROM spans")
    msg = str(info.value)
    assert "nme" in msg and "spans(trace_id, span_id" in msg and "traces(" in msg and "metrics(" in msg


def test_other_otel_instrumentation_lands_in_store(home: Path) -> None:
    from opentelemetry import trace as otel_trace

    tracer = otel_trace.get_tracer("some.other.library")
    with tracer.start_as_current_span("third-party", attributes={"openinference.span.kind": "TOOL", "n": 1}):
        with tracekit.span("ours"):
            pass
    r = dict(tracekit.query("SELECT name, kind FROM spans").fetchall())
    assert r == {"third-party": "tool", "ours": "span"}
    assert tracekit.query("SELECT scope FROM spans WHERE name='third-party'").fetchall() == [("some.other.library",)]


def test_otlp_endpoint_sends_spans_there_instead(tmp_path: Path) -> None:
    """An OTLP endpoint replaces the local store: spans reach a real HTTP receiver on loopback."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            req = ExportTraceServiceRequest.FromString(body)
            received.extend(s.name for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracekit.configure(home=tmp_path / "unused", otlp_endpoint=f"http://127.0.0.1:{server.server_port}")
        with tracekit.span("sent-over-otlp"):
            pass
        tracekit.flush()
        assert received == ["sent-over-otlp"]
        assert not (tmp_path / "unused").exists()
    finally:
        tracekit.configure(home=tmp_path / "after")
        server.shutdown()


def test_import_tracekit_stays_light() -> None:
    code = (
        "import sys, tracekit\n"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'fastapi', 'anthropic', 'torch', 'polars', 'ray', 'uvicorn') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_defaults_without_configure_and_flush_at_exit(tmp_path: Path) -> None:
    """No configure(), no flush(): spans land in ./.tracekit when the process exits."""
    script = "import tracekit\n@tracekit.trace\ndef hello(name):\n    return 'hi ' + name\nhello('bob')\n"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TRACEKIT_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = tracekit.query("SELECT name, project, input, output FROM spans", home=tmp_path / ".tracekit").fetchall()
    assert rows == [("hello", "default", '{"name":"bob"}', '"hi bob"')]
