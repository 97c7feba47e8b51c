"""The web UI over HTTP: security headers, escaping, tokens and sessions, bad input, downloads, no writes.

Real servers on loopback (`tracekit ui`'s and the collector's with the pages mounted), over a store
filled by real runs (tests/ui/conftest.py); httpx as the client.
"""

from __future__ import annotations

import fcntl
import hashlib
import html
import io
import json
import os
import re
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tracekit.ui._optimizer import chart
from tracekit.ui._source import LocalSource, Reader
from tracekit.ui._traces import Filters, list_traces, tree_order

from tests._support.ui_store import PAYLOAD
from tests.ui.conftest import TOKEN, UIStore

UI = Path(__file__).resolve().parents[2] / "tracekit" / "ui"


def pages(ids: dict) -> list[str]:
    return ["/ui/traces", f"/ui/traces/{ids['agent_trace']}", f"/ui/traces/{ids['hostile_trace']}", "/ui/runs",
            f"/ui/runs/{ids['run_id']}", f"/ui/experiments/{ids['run_id']}-0001", "/ui/evals", f"/ui/evals/{ids['eval_b']}",
            f"/ui/evals/compare?a={ids['eval_a']}&b={ids['eval_b']}", "/ui/sql?sql=SELECT+1+AS+x", "/ui/traces?status=error&q=hostile",
            f"/ui/runs/{ids['run_id']}/review", f"/ui/evals/{ids['eval_b']}/case?id={ids['regressed']}&epoch=1"]


def _csp_is_strict(headers: httpx.Headers) -> None:
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_every_page_sends_a_strict_csp_and_no_store(ui_server: str, ui_store: UIStore) -> None:
    for path in pages(ui_store.ids):
        r = httpx.get(ui_server + path)
        assert r.status_code == 200, (path, re.findall(r"<pre class=\"error\"[^>]*>(.*?)</pre>", r.text, re.S))
        _csp_is_strict(r.headers)
        assert r.headers["cache-control"] == "no-store" and r.headers["content-type"].startswith("text/html")
    asset = httpx.get(ui_server + "/ui/static/app.js")
    assert asset.status_code == 200 and "max-age" in asset.headers["cache-control"]
    _csp_is_strict(asset.headers)


def test_templates_and_code_never_mark_data_as_markup() -> None:
    for tpl in (UI / "templates").glob("*.html"):
        text = tpl.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, tpl
        assert "<script>" not in text and " on" + "click=" not in text and "style=" not in text, tpl  # no inline code or style
    for src in UI.glob("*.py"):
        assert "Markup(" not in src.read_text() and "autoescape=False" not in src.read_text(), src


def test_html_payload_in_span_text_is_escaped_on_every_page(ui_server: str, ui_store: UIStore) -> None:
    ids = ui_store.ids
    for path in (f"/ui/traces/{ids['hostile_trace']}", "/ui/traces?q=hostile", f"/ui/experiments/{ids['run_id']}-0001",
                 f"/ui/runs/{ids['run_id']}/review", f"/ui/evals/{ids['eval_b']}/case?id={ids['regressed']}&epoch=1",
                 f"/ui/evals/{ids['eval_b']}", f"/ui/evals/compare?a={ids['eval_a']}&b={ids['eval_b']}",
                 "/ui/sql?sql=" + httpx.QueryParams({"x": f"SELECT '{PAYLOAD.replace(chr(39), chr(39) * 2)}' AS p"})["x"]):
        body = httpx.get(ui_server + path, params=None).text
        assert PAYLOAD not in body and "<script>window.__pwned" not in body and "<img src=x" not in body, path
        assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1" in body or "&lt;/script&gt;" in body, path


def test_chart_json_block_cannot_end_its_script_element(ui_server: str, ui_store: UIStore) -> None:
    body = httpx.get(f"{ui_server}/ui/runs/{ui_store.ids['run_id']}").text
    block = re.search(r'<script type="application/json" id="progress-data">(.*?)</script>', body, re.S)
    assert block is not None
    raw = block.group(1)
    assert "<" not in raw and ">" not in raw  # the payload's </script> is \u003c/script\u003e inside the JSON
    data = json.loads(raw)
    assert any(PAYLOAD in label for label in data["labels"])  # and it decodes back to the same text
    assert data["points"] == len(data["x"]) == ui_store.ids["experiments"]


def test_chart_series_follow_the_progress_plot() -> None:
    rows = [
        {"seq": 0, "experiment_id": "r-0", "status": "baseline", "metric": 2.0, "direction": "min"},
        {"seq": 1, "experiment_id": "r-1", "status": "keep", "metric": 1.5, "improvement": 0.5, "threshold": 0.1,
         "alarms": ["touches_metric_output: the diff changes lines that report the metric"]},
        {"seq": 2, "experiment_id": "r-2", "status": "discard", "metric": 1.45, "improvement": 0.05, "threshold": 0.1},
        {"seq": 3, "experiment_id": "r-3", "status": "discard", "metric": 1.9, "improvement": -0.4, "threshold": 0.1},
        {"seq": 4, "experiment_id": "r-4", "status": "crash", "metric": None},
        {"seq": 5, "experiment_id": "r-5", "status": "invalid", "metric": None},
        {"seq": 6, "experiment_id": "r-6", "status": "timeout", "metric": None},
    ]
    c = chart(rows)  # type: ignore[arg-type]
    s = c["series"]
    assert c["points"] == 7 and c["x"] == list(range(7))  # one point per experiment
    assert s["baseline"][0] == 2.0 and s["keep"][1] == 1.5 and s["near"][2] == 1.45 and s["worse"][3] == 1.9
    edge = s["failed"][4]
    assert edge is not None and edge > 2.0 and s["invalid"][5] == edge and s["failed"][6] == edge  # the worse edge (min)
    assert s["incumbent"] == [2.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]
    # the band of a decision is [incumbent - threshold, incumbent]: the near miss at 1.45 sits inside it
    assert s["band_lo"][2] == pytest.approx(1.4) and s["band_hi"][2] == 1.5 and s["band_lo"][1] == pytest.approx(1.9)
    assert s["alarm"] == [None, 1.5, None, None, None, None, None] and "r-1 keep ALARM" in c["labels"][1]  # the alarmed keep, ringed


def test_trace_list_pages_with_a_cursor_and_filters(ui_store: UIStore) -> None:
    source = LocalSource(ui_store.home)
    try:
        r = Reader(source)
        everything = list_traces(r, Filters(), page_size=1000)["traces"]
        seen, cursor = [], ""
        while True:
            page = list_traces(r, Filters(cursor=cursor), page_size=3)
            seen += [t["trace_id"] for t in page["traces"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [t["trace_id"] for t in everything] and len(seen) == len(set(seen)) > 6
        errors = list_traces(r, Filters(status="error"))["traces"]
        assert ui_store.ids["hostile_trace"] in {t["trace_id"] for t in errors}
        assert all(t["error_count"] > 0 for t in errors)
        found = list_traces(r, Filters(q="6 * 7"))["traces"]
        assert [t["trace_id"] for t in found] == [ui_store.ids["agent_trace"]]
        assert list_traces(r, Filters(experiment=ui_store.ids["run_id"]))["traces"]
        assert not list_traces(r, Filters(min_ms="1e12"))["traces"]
        costly = list_traces(r, Filters(min_cost="0.000000001"))
        assert costly["cost_scanned"] == len(everything) and {t["trace_id"] for t in costly["traces"]} >= {ui_store.ids["agent_trace"]}
    finally:
        source.close()


def test_tree_order_survives_cycles_and_duplicate_ids() -> None:
    spans = [{"span_id": "a", "parent_span_id": "b"}, {"span_id": "b", "parent_span_id": "a"},
             {"span_id": "r", "parent_span_id": None}, {"span_id": "c", "parent_span_id": "r"}, {"span_id": "c", "parent_span_id": "r"}]
    out = tree_order(spans)
    assert [s["span_id"] for s in out] == ["r", "c", "a", "b"] and [s["depth"] for s in out] == [0, 1, 0, 0]


def test_bad_input_gets_a_clear_400_and_changes_nothing(ui_server: str, ui_store: UIStore) -> None:
    before = sorted(str(p.relative_to(ui_store.home)) for p in ui_store.home.rglob("*") if p.is_file())
    for path, says in (("/ui/traces/not-a-trace", "use 32 hex digits"), ("/ui/traces?since=yesterday", "use a date and time"),
                       ("/ui/traces?cursor=garbage", "start again from the first page"), ("/ui/traces?min_ms=fast", "use a number"),
                       ("/ui/runs/.hidden%20run", "use letters, digits"), ("/ui/nowhere", "no page at /ui/nowhere"), ("/ui/sql?sql=SELECT+1&limit=0", "from 1 to"),
                       ("/ui/evals/compare?a=x", "needs two runs"), ("/ui/runs/.hidden%20run/review", "use letters, digits"),
                       ("/ui/runs/no-such-run/review", "no experiments of run no-such-run"),
                       (f"/ui/evals/{ui_store.ids['eval_b']}/case?id=c1&epoch=first", "a whole number"),
                       (f"/ui/evals/{ui_store.ids['eval_b']}/case?id=nope&epoch=1", "no case nope")):
        r = httpx.get(ui_server + path)
        assert r.status_code in (400, 404) and says in html.unescape(r.text), (path, r.status_code, r.text[:300])
    for sql in ("COPY spans TO '/tmp/x.csv'", "ATTACH '/tmp/x.db'", "CREATE TABLE t AS SELECT 1", "SELECT * FROM read_text('/etc/passwd')"):
        r = httpx.get(ui_server + "/ui/sql", params={"sql": sql})
        assert r.status_code == 400 and 'id="sql-error"' in r.text, (sql, r.text[-1500:])
    assert httpx.get(ui_server + "/ui/traces/" + "0" * 32).status_code == 404
    after = sorted(str(p.relative_to(ui_store.home)) for p in ui_store.home.rglob("*") if p.is_file())
    assert after == before


def test_pages_only_answer_get_and_have_no_ingest(ui_server: str, ui_store: UIStore) -> None:
    assert httpx.post(ui_server + "/ui/traces", content=b"x" * 10).status_code == 405
    assert httpx.post(ui_server + "/v1/traces", content=b"{}", headers={"content-type": "application/json"}).status_code in (404, 405)
    assert not (ui_store.home / "_collector").exists()  # no WAL, no ingest lock taken


def test_sql_downloads_stream_csv_and_parquet(ui_server: str) -> None:
    sql = "SELECT name, kind, events FROM spans ORDER BY start_time, span_id"
    csv = httpx.get(ui_server + "/ui/sql.csv", params={"sql": sql})
    assert csv.status_code == 200 and csv.headers["content-disposition"].endswith('.csv"')
    lines = csv.text.splitlines()
    assert lines[0] == '"name","kind","events"' and len(lines) > 10
    pqr = httpx.get(ui_server + "/ui/sql.parquet", params={"sql": sql})
    table = pq.read_table(io.BytesIO(pqr.content))
    assert table.num_rows == len(lines) - 1 and table.column_names == ["name", "kind", "events"]
    empty = "SELECT name, duration_ms FROM spans WHERE false"
    assert httpx.get(ui_server + "/ui/sql.csv", params={"sql": empty}).text == '"name","duration_ms"\n'
    none = pq.read_table(io.BytesIO(httpx.get(ui_server + "/ui/sql.parquet", params={"sql": empty}).content))
    assert none.num_rows == 0 and none.column_names == ["name", "duration_ms"]
    refused = httpx.get(ui_server + "/ui/sql.csv", params={"sql": "COPY spans TO '/tmp/x'"})
    assert refused.status_code == 400


def test_live_run_page_polls_while_the_loop_holds_the_lock(ui_server: str, ui_store: UIStore) -> None:
    run, n = ui_store.ids["run_id"], ui_store.ids["experiments"]
    lock = ui_store.home / "optimizer" / run / "lock"
    with open(lock, "a+") as f:  # what a running loop holds (optimizer._session): an exclusive flock
        fcntl.flock(f, fcntl.LOCK_EX)
        page = httpx.get(f"{ui_server}/ui/runs/{run}").text
        assert f'/ui/runs/{run}/live?n={n}' in page and "running" in page
        assert httpx.get(f"{ui_server}/ui/runs/{run}/live", params={"n": n}).status_code == 204  # nothing new
        assert 'id="run-body"' in httpx.get(f"{ui_server}/ui/runs/{run}/live", params={"n": n - 1}).text  # new rows: the new body
        fcntl.flock(f, fcntl.LOCK_UN)
    assert httpx.get(f"{ui_server}/ui/runs/{run}/live", params={"n": n}).status_code == 286  # the loop is gone: stop polling
    assert "/live?n=" not in httpx.get(f"{ui_server}/ui/runs/{run}").text


# -- tokens and sessions (the collector with the pages, TRACEKIT_TOKEN set) ------------------------------------


def test_pages_need_a_read_token_and_the_session_opens_pages_only(collector_ui: str) -> None:
    with httpx.Client(base_url=collector_ui, follow_redirects=False) as c:
        r = c.get("/ui/traces")
        assert r.status_code == 401 and 'action="/ui/login"' in r.text and TOKEN not in r.text
        _csp_is_strict(r.headers)
        assert c.get("/ui/traces", params={"token": "wrong-token-0123456789"}).status_code == 401
        r = c.get("/ui/traces", params={"token": TOKEN, "status": "error"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/traces?status=error"  # the token leaves the URL
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie and TOKEN not in cookie
        page = c.get("/ui/traces?status=error")
        assert page.status_code == 200 and TOKEN not in page.text
        assert c.post("/api/sql", json={"sql": "SELECT 1"}).status_code == 401  # the cookie does not open the API
        assert c.get("/").status_code == 307 and c.get("/").headers["location"] == "/ui/"
    assert httpx.get(collector_ui + "/ui/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(collector_ui + "/ui/runs", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 403
    assert httpx.get(collector_ui + "/ui/static/app.css").status_code == 200  # vendored files hold no data


def test_login_form_is_small_same_origin_and_never_redirects_away(collector_ui: str) -> None:
    form = {"token": TOKEN, "next": "//evil.example/x"}
    with httpx.Client(base_url=collector_ui, follow_redirects=False) as c:
        r = c.post("/ui/login", data=form)
        assert r.status_code == 303 and r.headers["location"] == "/ui/" and "tracekit_session=" in r.headers["set-cookie"]
        assert c.post("/ui/login", data={"token": "wrong-wrong-wrong-wrong"}).status_code == 401
        assert c.post("/ui/login", data=form, headers={"Origin": "http://evil.example"}).status_code == 403
        assert c.post("/ui/login", data=form, headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}).status_code == 403
        big = c.post("/ui/login", content=b"token=" + b"x" * 10_000, headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        assert c.post("/ui/logout", data={}).status_code == 303
        assert c.get("/ui/traces").status_code == 401  # the session is gone


def test_docs_work_offline_from_vendored_files(collector_ui: str) -> None:
    page = httpx.get(collector_ui + "/docs")
    assert page.status_code == 200 and "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    _csp_is_strict(page.headers)
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert srcs and all(s.startswith("/docs/assets/") for s in srcs)
    for s in srcs:  # public (no token), served from the package
        assert httpx.get(collector_ui + s).status_code == 200, s
    assert httpx.get(collector_ui + "/docs/assets/../openapi.json").status_code in (401, 404)
    assert httpx.get(collector_ui + "/openapi.json").status_code == 200


def test_vendored_files_match_their_recorded_hashes() -> None:
    for table in (UI / "static" / "vendor" / "VENDORED.md", UI.parent / "collector" / "swagger" / "VENDORED.md"):
        rows = [line.split("|") for line in table.read_text().splitlines() if line.startswith("| ") and re.search(r"[0-9a-f]{64}", line)]
        assert rows, table
        for row in rows:
            name, digest = row[1].strip(), row[-2].strip()
            assert hashlib.sha256((table.parent / name).read_bytes()).hexdigest() == digest, name
        licenses = [p.name for p in table.parent.iterdir() if "LICENSE" in p.name]
        assert licenses, table


def test_ui_command_refuses_a_missing_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    out = subprocess.run([sys.executable, "-m", "tracekit", "ui", "--home", str(tmp_path / "nope"), "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "no store at" in out.stderr and "--home" in out.stderr


def test_a_page_stays_small_however_big_the_spans_it_shows(tmp_path: Path) -> None:
    from tracekit.store._store import Store
    from tracekit.ui import UIConfig
    from tracekit.ui._server import UIThread

    home = tmp_path / "home"
    tid = "ab" * 16
    big = json.dumps("x" * 60_000)
    rows = [{"trace_id": tid, "span_id": f"{i + 1:016x}", "parent_span_id": None if i == 0 else f"{1:016x}", "name": f"step {i}",
             "kind": "tool", "start_time": 1_700_000_000_000_000 + i * 1000, "end_time": 1_700_000_000_000_500 + i * 1000,
             "duration_ms": 0.5, "status": "ok", "input": big, "output": big} for i in range(120)]
    Store(home).write("spans", rows)  # 120 spans of 120 KB of text each: 14 MB
    with UIThread(UIConfig(home=home, port=0)) as ui:
        page = httpx.get(f"{ui.url}/ui/traces/{tid}")
        assert page.status_code == 200 and len(page.text) < 6_000_000
        assert page.text.count('class="note omitted"') > 60 and page.text.count('class="span ') == 120  # every span listed
        console = httpx.get(f"{ui.url}/ui/sql", params={"sql": "SELECT input, output FROM spans", "limit": "1000"})
        assert console.status_code == 200 and len(console.text) < 3_000_000 and "120 rows" in console.text
        assert console.text.count("the CSV or Parquet download has the whole value") == 240  # each cell cut, and said so
        wide = httpx.get(f"{ui.url}/ui/sql", params={"sql": "SELECT repeat('x', 5000) AS a, repeat('y', 5000) AS b FROM range(1000)",
                                                    "limit": "1000"})
        assert wide.status_code == 200 and len(wide.text) < 3_000_000 and "more rows exist" in wide.text  # the rows stop


def test_a_fifo_planted_as_a_run_lock_cannot_hang_the_pages(ui_store: UIStore, tmp_path: Path) -> None:
    import shutil

    from tracekit.ui import UIConfig
    from tracekit.ui._server import UIThread

    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    lock = home / "optimizer" / ui_store.ids["run_id"] / "lock"
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)  # opening it for reading would wait for a writer forever
    with UIThread(UIConfig(home=home, port=0)) as ui:
        for path in ("/ui/runs", f"/ui/runs/{ui_store.ids['run_id']}"):
            r = httpx.get(ui.url + path, timeout=20)
            assert r.status_code == 200 and "running" not in r.text.split("<h2>")[0].split("</h1>")[-1]


def test_a_session_cannot_reach_the_api_through_page_paths(collector_ui: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    with httpx.Client(base_url=collector_ui, follow_redirects=False) as c:
        cookie = c.get("/ui/traces", params={"token": TOKEN}).headers["set-cookie"].split(";")[0]
    netloc = urlsplit(collector_ui).netloc
    for raw in ("/ui/../api/traces", "/ui/..%2Fapi/traces", "/ui/%2e%2e/api/traces", "/ui//api/traces", "/ui/static/../../api/traces"):
        conn = http.client.HTTPConnection(netloc, timeout=20)  # sent as written: no client-side normalising of the path
        conn.request("GET", raw, headers={"Cookie": cookie})
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        conn.close()
        assert r.status in (400, 404) and '"traces"' not in body, (raw, r.status, body[:200])
