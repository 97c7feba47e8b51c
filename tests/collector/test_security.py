"""The collector under attack (issue 10, items 2, 9, 10): each test is named after the property it protects.

A read client can read the store and nothing else: no statement writes, deletes or changes a file
or a view, even past DuckDB's own settings, and a journal planted on disk deletes nothing. Any
client gets its token checked before its body is read, a body limit and deadlines on every
route, and cannot lock others out with idle or slow connections. A big answer streams, and its
memory is bounded and given back. Real uvicorn on loopback, real sockets, real worker processes.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

import tracekit
from tracekit._errors import StoreError
from tracekit.collector._server import CollectorThread
from tracekit.store._store import JOURNAL, LOCK, Store

from tests._support.collector import make_spans, protobuf_body, sql, start_thread_server

TOKEN = "read-token-0123456789abcdef"


def _snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` with its SHA-256: 'byte-identical' is equality of two of these."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def _post_sql(url: str, query: str, **extra: object) -> httpx.Response:
    return httpx.post(url + "/api/sql", json={"sql": query, **extra}, timeout=60)


# -- 2. the read API cannot write ---------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CollectorThread, Path]]:
    root = tmp_path_factory.mktemp("victim")
    (root / "outside").mkdir()
    (root / "outside" / "keep.txt").write_text("a file outside the store")
    srv = start_thread_server(root / "home")
    body = protobuf_body(make_spans(10, 3, seed=7))
    assert httpx.post(srv.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 30}]
    yield srv, root
    srv.stop()


def _write_attempts(home: Path) -> list[str]:
    spans = home / "spans"
    stored = sorted(spans.glob("*.parquet"))[0]
    return [
        f"EXPLAIN ANALYZE COPY (SELECT * FROM spans LIMIT 1) TO '{stored}' (FORMAT parquet)",  # overwrite a stored file
        f"EXPLAIN ANALYZE COPY (SELECT * FROM spans) TO '{spans}/injected.parquet' (FORMAT parquet)",  # inject spans
        f"/* hello */ explain/**/analyse\n\tCOPY (SELECT 1 AS x) TO '{spans}/x.parquet'",
        f"EXPLAIN (ANALYZE) COPY (SELECT 1 AS x) TO '{spans}/x.parquet'",
        "EXPLAIN (ANALYZE, FORMAT json) CREATE TABLE t AS SELECT 1",
        "EXPLAIN ANALYZE DROP VIEW spans",
        "EXPLAIN ANALYZE CREATE OR REPLACE VIEW traces AS SELECT 1 AS x",
        "EXPLAIN ANALYZE INSERT INTO _empty_spans (trace_id, span_id) VALUES ('x', 'y')",
        f"EXPLAIN COPY (SELECT 1 AS x) TO '{spans}/x.parquet'",
        "EXPLAIN SELECT 1; DROP VIEW spans",
        f"COPY (SELECT * FROM spans) TO '{spans}/copy.parquet'",
        f"EXPORT DATABASE '{spans}/export'",
        f"ATTACH '{spans}/attached.duckdb' AS a",
        "DROP VIEW spans",
        "CREATE OR REPLACE VIEW spans AS SELECT 1 AS x",
        "INSERT INTO _empty_spans (trace_id, span_id) VALUES ('x', 'y')",
        "SELECT * FROM query('DROP VIEW spans')",
    ]


@pytest.mark.parametrize("n", range(17))
def test_read_client_cannot_write_files_or_change_views(victim: tuple[CollectorThread, Path], n: int) -> None:
    srv, root = victim
    attempt = _write_attempts(root / "home")[n]
    before = _snapshot(root)
    r = _post_sql(srv.url, attempt)
    assert r.status_code in (400, 403), (attempt, r.text)
    assert _snapshot(root) == before, attempt  # every file byte-identical, none added
    assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 30}]  # the views are intact
    assert sql(srv.url, "SELECT count(*) AS n FROM traces") == [{"n": 10}]
    assert sql(srv.url, "SELECT count(*) AS n FROM _empty_spans") == [{"n": 0}]


def test_explain_of_one_plain_select_still_answers(victim: tuple[CollectorThread, Path]) -> None:
    srv, _ = victim
    for query in ("EXPLAIN SELECT name, count(*) FROM spans GROUP BY 1", "-- plan\nexplain (SELECT 1)", "DESCRIBE spans", "SUMMARIZE spans"):
        assert _post_sql(srv.url, query).status_code == 200, query
    r = _post_sql(srv.url, "EXPLAIN ANALYZE SELECT 1")
    assert r.status_code == 403 and "EXPLAIN ANALYZE runs the statement" in r.json()["message"]


def test_sql_worker_cannot_write_even_where_duckdb_allows_it(victim: tuple[CollectorThread, Path]) -> None:
    """The kernel fence alone: run_trusted skips the statement check, and DuckDB's allowed_directories
    include the store's folders, so only Landlock stands between this COPY and the file."""
    from tracekit._util import landlock as _landlock

    if _landlock.abi() < 1:
        pytest.skip("this kernel has no Landlock; /health and the serve banner say so (DuckDB's settings are the fence)")
    srv, root = victim
    service = srv.app.state.collector.sql_service()  # type: ignore[attr-defined]
    assert service.landlock >= 1
    before = _snapshot(root)
    stored = sorted((root / "home" / "spans").glob("*.parquet"))[0]
    for statement in (f"COPY (SELECT 1 AS x) TO '{root}/home/spans/x.parquet'", f"COPY (SELECT 1 AS x) TO '{stored}' (FORMAT parquet)"):
        with pytest.raises(tracekit.QueryError, match="Permission denied"):
            service.run_trusted(statement)
    assert _snapshot(root) == before
    health = httpx.get(srv.url + "/health").json()["sql"]
    assert health["landlock_abi"] >= 1 and "read-only under Landlock" in health["write_fence"]


def _merged_name() -> str:
    return "c-20260101T000000-1-0123abcd.parquet"


def test_planted_journal_cannot_delete_outside_the_store(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    srv = start_thread_server(tmp_path / "home")
    try:
        body = protobuf_body(make_spans(5, 2, seed=9))
        assert httpx.post(srv.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 10}]
        spans = tmp_path / "home" / "spans"
        stored = sorted(spans.glob("*.parquet"))
        for sources in (["../../outside/keep.txt"], [str(outside / "keep.txt")], ["../experiments/x.parquet", stored[0].name]):
            (spans / JOURNAL).write_text(json.dumps({"output": stored[0].name, "sources": sources}))
            before = _snapshot(tmp_path)
            assert sql(srv.url, "SELECT count(*) AS n FROM spans") == [{"n": 10}]  # the read path deletes nothing
            assert tracekit.query("SELECT count(*) FROM spans", home=tmp_path / "home", flush=False).fetchall() == [(10,)]
            assert _snapshot(tmp_path) == before
            problems = Store(tmp_path / "home").recover("spans")  # a writer: ignores it, says why
            assert len(problems) == 1 and "not plain file names of this folder" in problems[0]
            assert (outside / "keep.txt").read_text() == "precious" and all(p.exists() for p in stored)
    finally:
        srv.stop()


def test_readers_never_delete_and_recovery_settles_only_a_true_journal(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    for f in range(3):
        store.write("spans", [{"trace_id": f"{f:032x}", "span_id": f"{i:016x}", "name": "s", "kind": "span",
                               "start_time": 1_700_000_000_000_000 + i, "end_time": 1_700_000_000_000_100 + i,
                               "duration_ms": 0.1, "status": "ok"} for i in range(10)])
    folder = store.table_dir("spans")
    sources = [p.name for p in store.files("spans")]
    full = store.read("spans")
    pq.write_table(full.slice(0, 5), folder / _merged_name())  # an output short of its sources' rows
    (folder / JOURNAL).write_text(json.dumps({"output": _merged_name(), "sources": sources}))
    (folder / LOCK).touch()  # the compactors' lock file (empty) may be created; nothing else may change
    before = _snapshot(folder)
    assert store.row_count("spans") == 35  # such a journal hides nothing
    with pytest.raises(StoreError, match="inspect the folder"):
        store.compact("spans")
    assert _snapshot(folder) == before  # and recovery deletes nothing on its word

    pq.write_table(full, folder / _merged_name())  # now a true interrupted compaction
    before = _snapshot(folder)
    assert tracekit.query("SELECT count(*) FROM spans", home=store.home, flush=False).fetchall() == [(30,)]
    assert _snapshot(folder) == before  # every row once, and reading deleted nothing
    assert store.recover("spans") == []  # a writer settles it
    assert sorted(p.name for p in folder.glob("*.parquet")) == [_merged_name()] and not (folder / JOURNAL).exists()
    assert store.row_count("spans") == 30


# -- 9. connections: token before body, body limits and deadlines, no lock-out --------------------


def _addr(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _health(url: str) -> dict:
    r = httpx.get(url + "/health", timeout=5)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _push_body(url: str, head: bytes, total: int) -> tuple[int, bytes]:
    """Send `head` and then up to `total` body bytes, reading the server's answer as it comes.

    Returns (body bytes the kernel accepted from us, the answer). Stops when the server answers or
    closes, after `total`, or after 20 s. A chunked head gets well-formed chunks of 64 KiB.
    """
    sock = socket.create_connection(_addr(url))
    sock.sendall(head)
    sock.setblocking(False)
    chunk = b"\0" * 65536
    if b"chunked" in head:
        chunk = b"10000\r\n" + chunk + b"\r\n"
    sent, answer, deadline = 0, b"", time.monotonic() + 20
    try:
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    continue
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    answer = _answer(sock, 5)
    sock.close()
    return sent, answer


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[CollectorThread]:
    from tracekit.collector._auth import Tokens
    from tracekit.collector._conn import ConnLimits

    srv = start_thread_server(tmp_path / "home", tokens=Tokens.from_env({"TRACEKIT_TOKEN": TOKEN}),
                              conn=ConnLimits(header_timeout=1.0, body_timeout=1.0, write_timeout=1.0))
    yield srv
    srv.stop()


def test_token_is_checked_before_any_body_is_read(guarded: CollectorThread) -> None:
    big = 300 << 20
    for path, ctype in (("/api/sql", "application/json"), ("/v1/traces", "application/x-protobuf"), ("/api/traces", "text/plain")):
        for framing in (f"Content-Length: {big}", "Transfer-Encoding: chunked"):
            before = _health(guarded.url)["connections"]["bytes_received"]
            head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\n{framing}\r\n\r\n".encode()
            sent, answer = _push_body(guarded.url, head, big)
            assert answer.startswith(b"HTTP/1.1 401"), (path, framing, answer[:200])
            received = _health(guarded.url)["connections"]["bytes_received"] - before
            assert received < 1 << 20, (path, framing, received)  # the server read a small prefix at most
            assert sent < 32 << 20, (path, framing, sent)  # what the kernels buffered, not 300 MB
    assert _health(guarded.url)["connections"]["rejected_before_body"] >= 6


def test_every_route_limits_its_body(guarded: CollectorThread) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    for path in ("/api/sql", "/api/traces", "/health"):
        head = f"POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {2 << 20}\r\n\r\n".encode()
        sent, answer = _push_body(guarded.url, head, 2 << 20)
        assert answer.startswith(b"HTTP/1.1 413") and b"over the limit" in answer, (path, answer[:300])
    head = f"POST /api/sql HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunks = b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(40))  # 2.5 MiB, no declared size
    sock = socket.create_connection(_addr(guarded.url))
    sock.sendall(head)
    try:
        sock.sendall(chunks)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert _answer(sock, 5).startswith(b"HTTP/1.1 413")
    sock.close()
    r = httpx.post(guarded.url + "/api/sql", json={"sql": "SELECT 1 AS one"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["rows"] == [{"one": 1}]


def test_slow_headers_and_slow_bodies_are_cut_off(guarded: CollectorThread) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    silent = socket.create_connection(_addr(guarded.url))
    dribble = socket.create_connection(_addr(guarded.url))
    slow_sql = socket.create_connection(_addr(guarded.url))
    slow_otlp = socket.create_connection(_addr(guarded.url))
    slow_sql.sendall(f"POST /api/sql HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"sql\": ".encode())
    slow_otlp.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{".encode())
    start = time.monotonic()
    for byte in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 40:
        try:
            dribble.send(bytes([byte]))  # one byte every 0.1 s: the headers never end in time
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.1)
    answers = {name: _answer(s, 5) for name, s in (("silent", silent), ("dribble", dribble), ("sql", slow_sql), ("otlp", slow_otlp))}
    assert time.monotonic() - start < 12
    assert answers["dribble"].startswith(b"HTTP/1.1 408") and b"headers took too long" in answers["dribble"]
    assert answers["silent"].startswith(b"HTTP/1.1 408")
    assert answers["sql"].startswith(b"HTTP/1.1 408") and b"body took over 1 s" in answers["sql"]
    assert answers["otlp"].startswith(b"HTTP/1.1 408")  # an OTLP Status body, as exporters expect
    counters = _health(guarded.url)["connections"]
    assert counters["header_timeouts"] >= 2 and counters["body_timeouts"] >= 2


def test_idle_connections_cannot_lock_out_health(tmp_path: Path) -> None:
    """1,100 connections that send nothing and 50 that dribble headers: /health still answers at once,
    because at the cap a new connection evicts the oldest one that is not being answered."""
    from tracekit.collector._conn import ConnLimits

    srv = start_thread_server(tmp_path / "home", conn=ConnLimits(header_timeout=120, max_connections=1000))
    socks: list[socket.socket] = []
    try:
        for i in range(1150):
            s = socket.create_connection(_addr(srv.url))
            if i >= 1100:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: a")
            socks.append(s)
        start = time.monotonic()
        health = _health(srv.url)
        assert time.monotonic() - start < 3
        conns = health["connections"]
        assert conns["open"] <= 1000 and conns["evicted"] >= 150
        assert sql(srv.url, "SELECT 42 AS x") == [{"x": 42}]
        closed = 0
        for s in socks[:200]:  # the oldest were closed by the server
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except BlockingIOError:
                pass
        assert closed >= 150
    finally:
        for s in socks:
            s.close()
        srv.stop()


def test_a_client_that_stops_reading_cannot_hold_a_sql_worker(tmp_path: Path) -> None:
    from tracekit.collector._conn import ConnLimits
    from tracekit.collector._sql import SqlLimits

    srv = start_thread_server(tmp_path / "home", conn=ConnLimits(write_timeout=1.0),
                              sql=SqlLimits(workers=1, queue_timeout=5.0, timeout=60.0))
    try:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(_addr(srv.url))
        body = json.dumps({"sql": "SELECT i, repeat('x', 2000) AS pad FROM range(100000) t(i)", "limit": 100000}).encode()
        stalled.sendall(b"POST /api/sql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 20
        while _health(srv.url)["connections"]["write_timeouts"] < 1:  # it reads nothing: cut off after ~1 s of stall
            assert time.monotonic() < deadline, "the stalled client was never dropped"
            time.sleep(0.2)
        start = time.monotonic()
        assert sql(srv.url, "SELECT 7 AS x") == [{"x": 7}]  # the only worker is free again
        assert time.monotonic() - start < 5
        stalled.close()
    finally:
        srv.stop()


# -- 10. memory of SQL answers -------------------------------------------------------------------


def _vm(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of `pid` in MiB: its peak resident memory so far, and now."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) >> 10, int(fields["VmRSS"].split()[0]) >> 10


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def big_store(home: Path, rows: int, pad: int = 2400) -> None:
    """`rows` spans of about `pad` bytes of input each: SELECT * of them is a JSON answer of ~rows*pad bytes."""
    store = Store(home)
    for f in range(0, rows, 10_000):
        store.write("spans", [{"trace_id": f"{f:016x}{i:016x}", "span_id": f"{i:016x}", "name": "s", "kind": "span",
                               "start_time": 1_700_000_000_000_000 + i, "end_time": 1_700_000_000_000_100 + i,
                               "duration_ms": 0.1, "status": "ok", "input": json.dumps("x" * pad + str(i))}
                              for i in range(f, min(f + 10_000, rows))])


def test_big_answers_stream_with_bounded_memory_given_back(tmp_path: Path) -> None:
    """Two concurrent ~100 MB JSON answers from a real `tracekit serve`: the collector's peak RSS grows by
    under 64 MiB (it relays frames of at most 1 MiB; the old code held every row as Python objects and
    the JSON text at once, ~10x the answer), each worker's peak stays under 512 MiB (measured ~260 MiB
    for a 274 MB answer; DuckDB's own cap is 1 GB), and the workers are replaced afterwards."""
    from tests._support.collector import ServeProcess

    rows = 40_000
    big_store(tmp_path / "home", rows)
    proc = ServeProcess(tmp_path / "home", env={"TRACEKIT_SQL_QUEUE_TIMEOUT": "60"})
    try:
        pid = proc.proc.pid
        hwm_before, _ = _vm(pid)
        worker_peaks: dict[int, int] = {}
        bodies: list[bytes] = []

        def ask() -> None:
            with httpx.stream("POST", proc.url + "/api/sql", json={"sql": "SELECT * FROM spans", "limit": rows}, timeout=120) as r:
                assert r.status_code == 200 and r.headers.get("x-tracekit-streamed") == "true"
                bodies.append(b"".join(r.iter_bytes()))

        import threading

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for child in _children(pid):
                try:
                    worker_peaks[child] = _vm(child)[0]
                except (OSError, KeyError):  # exited (being replaced) between listing and reading
                    pass
            time.sleep(0.05)
        hwm_after, _ = _vm(pid)
        assert len(bodies) == 2
        for body in bodies:
            answer = json.loads(body)
            assert answer["row_count"] == rows == len(answer["rows"]) and answer["truncated"] is False
            assert len(body) > 90 << 20
        assert hwm_after - hwm_before < 64, (hwm_before, hwm_after)
        assert worker_peaks and max(worker_peaks.values()) < 512, worker_peaks
        health = proc.wait_healthy()["sql"]
        assert health["workers_recycled"] >= 2 and health["busy"] == 0  # the big answers' memory went back to the OS
        assert sql(proc.url, "SELECT count(*) AS n FROM spans") == [{"n": rows}]
    finally:
        proc.stop()


def test_an_answer_cut_after_its_first_rows_cannot_pass_for_whole(tmp_path: Path) -> None:
    """Past the time limit mid-answer: the JSON document ends with truncated + error, the Arrow stream
    is cut before its end (the client's reader fails); a query over the memory cap fails cleanly."""
    import pyarrow as pa

    from tracekit.collector._sql import SqlLimits

    srv = start_thread_server(tmp_path / "home", sql=SqlLimits(max_rows=10**9, max_bytes=1 << 40, memory_limit="256MB"))
    try:
        q = {"sql": "SELECT i, repeat('x', 200) AS pad FROM range(10000000000) t(i)", "limit": 10**9, "timeout": 1}
        r = httpx.post(srv.url + "/api/sql", json=q, timeout=60)
        doc = r.json()
        assert r.status_code == 200 and r.headers["x-tracekit-streamed"] == "true"
        assert doc["truncated"] is True and doc["error"] == "sql_timeout" and "time limit of 1 s" in doc["message"]
        assert doc["row_count"] == len(doc["rows"]) > 0
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", srv.url + "/api/sql", json={**q, "format": "arrow"}, timeout=60) as stream:
                b"".join(stream.iter_bytes())
        r = httpx.post(srv.url + "/api/sql", json={"sql": "SELECT list(repeat('x', 1000)) FROM range(3000000)"}, timeout=60)
        assert r.status_code == 400 and "Out of Memory" in r.json()["message"]
        r = httpx.post(srv.url + "/api/sql", json={"sql": "SELECT 5 AS x", "format": "arrow"}, timeout=60)
        assert pa.ipc.open_stream(r.content).read_all().to_pylist() == [{"x": 5}]  # still serving
    finally:
        srv.stop()
