"""The collector's read API: read-only SQL that reaches nothing but the store, Arrow output, limits, traces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from tracekit.collector._server import CollectorThread

from tests._support.collector import make_spans, protobuf_body, sql, start_thread_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorThread]:
    home = tmp_path_factory.mktemp("sql") / "home"
    srv = start_thread_server(home)
    headers = {"Content-Type": "application/x-protobuf"}
    for i, project in enumerate(("alpha", "beta", "alpha")):
        body = protobuf_body(make_spans(10, 3, seed=100 + i, resource={"tracekit.project": project}))
        assert httpx.post(srv.url + "/v1/traces", content=body, headers=headers).status_code == 200
    assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 90}]  # a read folds the WAL into Parquet
    yield srv
    srv.stop()


def _sql(url: str, query: str, **extra: object) -> httpx.Response:
    return httpx.post(url + "/api/sql", json={"sql": query, **extra}, timeout=60)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


REFUSED = [
    ("SELECT * FROM read_csv('/etc/passwd')", "Cannot access file \"/etc/passwd\""),
    ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled"),
    ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
    ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "file system operations are disabled"),
    ("COPY (SELECT * FROM spans) TO '/tmp/tracekit-stolen.csv'", "COPY statements are not allowed"),
    ("ATTACH '/tmp/tracekit-other.db' AS other", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "LOAD statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("SET enable_external_access = true", "SET statements are not allowed"),
    ("RESET lock_configuration", "SET statements are not allowed"),
    ("PRAGMA enable_profiling", "PRAGMA statements are not allowed"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are not allowed"),
    ("CREATE OR REPLACE VIEW spans AS SELECT 1 AS x", "CREATE statements are not allowed"),
    ("EXPORT DATABASE '/tmp/tracekit-export'", "EXPORT statements are not allowed"),
    ("CALL pragma_version()", "CALL statements are not allowed"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x.csv''')", "single SELECT statement"),
]


@pytest.mark.parametrize(("query", "message"), REFUSED, ids=[q.split()[0] + "-" + str(i) for i, (q, _) in enumerate(REFUSED)])
def test_refuses_everything_but_reading_the_store(server: CollectorThread, query: str, message: str) -> None:
    home = server.config.home
    before = _files(home)
    r = _sql(server.url, query)
    assert r.status_code in (400, 403), r.text
    assert message in r.json()["message"], r.json()
    if r.status_code == 403:
        assert r.json()["error"] == "sql_refused"
        assert "only reads the store's tables and views" in r.json()["message"]
    assert _files(home) == before  # nothing written in the store
    assert not Path("/tmp/tracekit-stolen.csv").exists() and not Path("/tmp/tracekit-export").exists()


def test_store_files_are_readable_but_not_beyond_them(server: CollectorThread) -> None:
    home = server.config.home.resolve()
    files = sorted((home / "spans").glob("*.parquet"))
    assert files
    r = _sql(server.url, f"SELECT count(*) AS n FROM read_parquet('{home}/spans/*.parquet')")
    assert r.status_code == 200 and r.json()["rows"] == [{"n": 90}]
    wal = home / "_collector" / "collector.lock"
    r = _sql(server.url, f"SELECT * FROM read_text('{wal}')")  # the store's own bookkeeping is off limits
    assert r.status_code == 403
    r = _sql(server.url, f"SELECT * FROM read_text('{home}/spans/../../../../etc/passwd')")
    assert r.status_code == 403
    r = _sql(server.url, "SELECT current_setting('enable_external_access') AS e, current_setting('lock_configuration') AS l")
    assert r.json()["rows"] == [{"e": False, "l": True}]


def test_json_rows_views_and_json_functions(server: CollectorThread) -> None:
    r = _sql(server.url, "SELECT project, count(*) AS n FROM traces GROUP BY 1 ORDER BY 1")
    body = r.json()
    assert body["columns"] == [{"name": "project", "type": "string"}, {"name": "n", "type": "int64"}]
    assert body["rows"] == [{"project": "alpha", "n": 20}, {"project": "beta", "n": 10}]
    assert body["truncated"] is False and body["row_count"] == 2
    rows = sql(server.url, "SELECT json_extract(attributes, '$.\"gen_ai.usage.input_tokens\"')::INT AS t, start_time FROM spans WHERE kind = 'llm' LIMIT 1")
    assert rows[0]["t"] == 10 and rows[0]["start_time"][:2] == "20"  # timestamps as ISO 8601
    r = _sql(server.url, "WITH x AS (SELECT 'nan'::DOUBLE AS v) FROM x")
    assert r.status_code == 200 and r.json()["rows"] == [{"v": None}]  # strict JSON: NaN becomes null
    assert _sql(server.url, "DESCRIBE spans").status_code == 200
    assert _sql(server.url, "EXPLAIN SELECT * FROM spans").status_code == 200


def test_arrow_ipc_on_request(server: CollectorThread) -> None:
    q = "SELECT span_id, duration_ms FROM spans ORDER BY span_id"
    r = httpx.post(server.url + "/api/sql", json={"sql": q}, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.num_rows == 90 and table.schema.names == ["span_id", "duration_ms"]
    r = _sql(server.url, q, format="arrow", limit=7)
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.num_rows == 7 and r.headers["x-tracekit-truncated"] == "true"


def test_row_limit_and_time_limit(server: CollectorThread) -> None:
    r = _sql(server.url, "SELECT * FROM range(100000) t(i)", limit=5)
    assert r.json()["rows"] == [{"i": i} for i in range(5)] and r.json()["truncated"] is True
    r = _sql(server.url, "SELECT * FROM range(10)")
    assert r.json()["truncated"] is False and r.json()["row_count"] == 10
    r = _sql(server.url, "SELECT count(*) FROM range(1000000000000) a", timeout=0.3)
    assert r.status_code == 400 and r.json()["error"] == "sql_timeout"
    assert "time limit of 0.3 s" in r.json()["message"]
    assert _sql(server.url, "SELECT 42 AS x").json()["rows"] == [{"x": 42}]  # still serving


def test_sql_errors_name_the_tables(server: CollectorThread) -> None:
    r = _sql(server.url, "SELECT nope FROM spans")
    assert r.status_code == 400 and r.json()["error"] == "sql_error"
    assert "spans(" in r.json()["message"]  # the schema listing helps fix the query
    assert _sql(server.url, "   ").status_code == 400
    assert _sql(server.url, "SELEC 1").status_code == 400
    r = httpx.post(server.url + "/api/sql", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_traces_api_filters_and_pages_through_everything_once(server: CollectorThread) -> None:
    r = httpx.get(server.url + "/api/traces", params={"project": "beta"})
    assert r.status_code == 200 and len(r.json()["traces"]) == 10 and r.json()["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(server.url + "/api/traces", params=params).json()
        seen += [t["trace_id"] for t in page["traces"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 30
    starts = [t["start_time"] for t in httpx.get(server.url + "/api/traces", params={"limit": 30}).json()["traces"]]
    assert starts == sorted(starts, reverse=True)
    assert httpx.get(server.url + "/api/traces", params={"status": "error"}).json()["traces"] == []
    assert len(httpx.get(server.url + "/api/traces", params={"name": "agent run", "since": "2000-01-01T00:00:00Z"}).json()["traces"]) == 30
    assert httpx.get(server.url + "/api/traces", params={"until": "2000-01-01T00:00:00"}).json()["traces"] == []
    assert httpx.get(server.url + "/api/traces", params={"cursor": "!!"}).status_code == 400


def test_one_trace_with_its_spans(server: CollectorThread) -> None:
    tid = httpx.get(server.url + "/api/traces", params={"limit": 1}).json()["traces"][0]["trace_id"]
    body = httpx.get(server.url + f"/api/traces/{tid.upper()}").json()
    assert body["trace"]["trace_id"] == tid and body["trace"]["span_count"] == 3
    assert [s["trace_id"] for s in body["spans"]] == [tid] * 3
    assert body["spans"][0]["parent_span_id"] is None  # the root starts first
    assert httpx.get(server.url + "/api/traces/" + "0" * 32).status_code == 404
    r = httpx.get(server.url + "/api/traces/xyz")
    assert r.status_code == 400 and "32 hex digits" in r.json()["message"]


def test_openapi_docs(server: CollectorThread) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/traces", "/api/sql", "/api/traces", "/api/traces/{trace_id}", "/health"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_result_size_cap_truncates(tmp_path: Path) -> None:
    from tracekit.collector._sql import SqlLimits
    from tracekit.collector._sqlpool import SqlService

    service = SqlService(tmp_path / "home", SqlLimits(max_bytes=64 * 1024, max_rows=10**6, default_rows=10**6))
    try:
        result = service.run("SELECT i, repeat('x', 100) AS pad FROM range(100000) t(i)")
        assert result.truncated and 0 < result.table.num_rows < 100000
        assert result.table.column("i").to_pylist() == list(range(result.table.num_rows))  # a prefix, in order
        assert not service.run("SELECT 1 AS one").truncated
    finally:
        service.close()
