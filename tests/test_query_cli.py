"""SQL over the store (tracekit.query, views) and the CLI commands of the foundation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit
from tracekit._cli.main import main
from tracekit._errors import QueryError


@tracekit.trace(kind="tool")
def tool(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x


@tracekit.trace(kind="agent")
def agent(xs: list[int]) -> int:
    total = 0
    for x in xs:
        try:
            total += tool(x)
        except ValueError:
            pass
    return total


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


def test_schemas_folder_matches_code() -> None:
    from tracekit.store._tables import render

    root = Path(__file__).resolve().parent.parent / "schemas"
    expected = render(root)
    for path, text in expected.items():
        assert path.exists(), f"{path.name} missing: run python -m tracekit.store schemas docs/tables.md"
        assert path.read_text() == text, f"{path.name} drifted from the code: run python -m tracekit.store schemas docs/tables.md"
    extra = {p.name for p in root.iterdir()} - {p.name for p in expected}
    assert not extra, f"stale files in schemas/: {extra}"


def test_tables_doc_matches_code() -> None:
    from tracekit.store._docgen import render

    doc = Path(__file__).resolve().parent.parent / "docs" / "tables.md"
    assert doc.read_text() == render(), "docs/tables.md drifted: run python -m tracekit.store schemas docs/tables.md"


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sql_formats(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([1, 2])
    tracekit.flush()
    code, out, _ = _run_cli(["sql", "SELECT name, kind FROM spans ORDER BY start_time", "--format", "json", "--home", str(home)], capsys)
    assert code == 0 and json.loads(out) == [{"name": "agent", "kind": "agent"}, {"name": "tool", "kind": "tool"}, {"name": "tool", "kind": "tool"}]
    code, out, _ = _run_cli(["sql", "SELECT count(*) AS n FROM spans", "-f", "csv", "--home", str(home)], capsys)
    assert out.splitlines() == ["n", "3"]
    code, out, _ = _run_cli(["sql", "SELECT kind, count(*) AS n FROM spans GROUP BY kind ORDER BY kind", "--home", str(home)], capsys)
    assert "agent" in out and "tool" in out and "2 rows" in out


def test_cli_bad_query_is_a_message_not_a_traceback(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([1])
    tracekit.flush()
    code, out, err = _run_cli(["sql", "SELEC nope", "--home", str(home)], capsys)
    assert code == 2 and "Traceback" not in err and "syntax error" in err.lower() and "spans(" in err


def test_cli_traces_list_and_show(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([3, -4])
    tracekit.flush()
    code, out, _ = _run_cli(["traces", "list", "-f", "json", "--home", str(home)], capsys)
    (trace,) = json.loads(out)
    assert trace["name"] == "agent" and trace["spans"] == 3 and trace["errors"] == 1
    code, out, _ = _run_cli(["traces", "show", trace["trace_id"][:10], "--home", str(home)], capsys)
    assert code == 0
    assert "agent" in out and "error" in out and "ValueError: negative" in out and '{"x":3}' in out
    code, out, err = _run_cli(["traces", "show", "ffffffff", "--home", str(home)], capsys)
    assert code == 2 and "no trace with id" in err


def test_cli_demo_answers_in_sql(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    out = subprocess.run([sys.executable, "-m", "tracekit", "demo", "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "The answer is 42.0." in out.stdout and "KeyError" in out.stdout
    assert tracekit.query("SELECT count(*) FROM traces", home=home).fetchall() == [(3,)]


def test_defaults_without_configure_and_flush_at_exit(tmp_path: Path) -> None:
    """No configure(), no flush(): spans land in ./.tracekit when the process exits."""
    script = "import tracekit\n@tracekit.trace\ndef hello(name):\n    return 'hi ' + name\nhello('bob')\n"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TRACEKIT_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = tracekit.query("SELECT name, project, input, output FROM spans", home=tmp_path / ".tracekit").fetchall()
    assert rows == [("hello", "default", '{"name":"bob"}', '"hi bob"')]
