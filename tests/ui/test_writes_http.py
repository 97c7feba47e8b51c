"""The pages' writes over HTTP: the review of a run's keeps and the annotation forms, and who may send them.

Real servers on loopback (`tracekit ui --allow-writes`, with and without tokens; the collector with
the pages) over a real optimizer run of the gaming target (tests/_support/gaming.py: an honest keep,
then a keep that prints a fake metric); httpx as the browser, sending what Chromium sends with a
form (Sec-Fetch-Site, the session cookie, the page's csrf field). Every refusal stores nothing.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tracekit.collector import CollectorConfig
from tracekit.collector._auth import Tokens
from tracekit.collector._server import CollectorThread
from tracekit.optimizer._review import load_chain
from tracekit.optimizer._session import loop_pid
from tracekit.ui import UIConfig, install
from tracekit.ui._server import UIThread

from tests._support.gaming import GAMING_FAKE_METRIC, HONEST_LR, make_gaming_target
from tests._support.optimizer import ScriptedProposer, git, optimize
from tests._support.ui_store import PAYLOAD
from tests.ui.conftest import UIStore

FULL = "ui-full-token-0123456789abcdef"  # TRACEKIT_TOKEN: reads and ingests, so its sessions may write
READ = "ui-read-token-0123456789abcdef"  # TRACEKIT_READ_TOKEN: its sessions only read
SAME = {"Sec-Fetch-Site": "same-origin"}  # what Chromium sends with a form posted from the server's own page


class Run:
    def __init__(self, root: Path) -> None:
        self.root, self.home = root, root / ".tracekit"
        rows = {r["description"]: r for r in optimize(root, proposer=ScriptedProposer([HONEST_LR, GAMING_FAKE_METRIC]), iterations=2).rows}
        self.honest = rows["a higher learning rate converges further"]
        self.gaming = rows["report a better loss"]
        assert self.honest["status"] == self.gaming["status"] == "keep" and self.gaming["alarms"] and not self.honest["alarms"]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(make_gaming_target(tmp_path / "fit"))


def serve(home: Path, *, tokens: dict[str, str] | None = None, writes: bool = True) -> UIThread:
    return UIThread(UIConfig(home=home, port=0, allow_writes=writes, tokens=Tokens.from_env(env=tokens or {})))


def annotations(home: Path) -> list[dict[str, Any]]:
    return sorted((r for f in (home / "annotations").glob("*.parquet") for r in pq.read_table(f).to_pylist()), key=lambda r: r["time"])


def csrf_of(c: httpx.Client, path: str) -> str:
    r = c.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text)
    assert found is not None, re.findall(r'id="annotate-off">(.*?)</p>', r.text) or r.text[-600:]
    return found.group(1)


def decide(c: httpx.Client, csrf: str, eid: str, decision: str, why: str = "", author: str = "ana",
           headers: dict[str, str] | None = None) -> httpx.Response:
    return c.post("/ui/runs/main/review", data={"csrf": csrf, "experiment_id": eid, "decision": decision, "why": why, "author": author},
                  headers=SAME if headers is None else headers)


def test_review_form_rejects_a_gaming_keep_and_the_branch_and_ledger_follow(run: Run) -> None:
    with serve(run.home) as ui, httpx.Client(base_url=ui.url) as c:
        page = c.get("/ui/runs/main/review").text
        assert page.index(run.honest["experiment_id"]) < page.index(run.gaming["experiment_id"])  # the keeps in order
        assert "ALARM touches_metric_output" in page and page.count("ALARM") == 1  # only the gaming keep carries one
        assert f'/ui/traces/{run.gaming["trace_id"]}' in page and 'class="diff"' in page
        csrf = csrf_of(c, "/ui/runs/main/review")
        r = decide(c, csrf, run.gaming["experiment_id"], "reject", "prints a fake metric")
        assert r.status_code == 303 and r.headers["location"] == f"/ui/runs/main/review#keep-{run.gaming['experiment_id']}"
        assert decide(c, csrf, run.honest["experiment_id"], "approve").status_code == 303
        after = c.get("/ui/runs/main/review").text
    chain = load_chain(run.home, "main")
    assert chain is not None and [link.experiment_id for link in chain.links] == [run.honest["experiment_id"]]
    assert chain.rejected == [run.gaming["experiment_id"]]
    assert git(run.root, "rev-parse", "tracekit/main") == run.honest["candidate_commit"]  # the gaming keep left the branch
    assert 'print("val_loss: 0.0")' not in git(run.root, "show", "tracekit/main:train.py")
    rows = [(a["target_id"], a["label"], a["note"], a["author"], a["source"]) for a in annotations(run.home)]
    assert rows == [(run.gaming["experiment_id"], "reject", "prints a fake metric", "ana", "review"),
                    (run.honest["experiment_id"], "approve", None, "ana", "review")]  # as `optimize review` records them
    assert 'id="chain-rejected">' + run.gaming["experiment_id"] in after and "rejected" in after


def test_review_form_refuses_what_the_cli_refuses_and_stores_nothing(run: Run) -> None:
    with serve(run.home) as ui, httpx.Client(base_url=ui.url) as c:
        csrf = csrf_of(c, "/ui/runs/main/review")
        cases = [(run.gaming["experiment_id"], "reject", "", "ana", "say why"),  # a rejection needs why
                 ("main-0000", "approve", "", "ana", "is not a kept experiment of run"),  # a baseline is not a keep
                 (run.gaming["experiment_id"], "delete", "x", "ana", "approve or reject"),
                 (run.gaming["experiment_id"], "approve", "", "  ", "say who you are")]
        for eid, decision, why, author, message in cases:
            r = decide(c, csrf, eid, decision, why, author)
            assert r.status_code == 400 and message in " ".join(r.text.split()), (eid, decision, r.text[-800:])
        assert c.post("/ui/runs/no%20such/review", data={"csrf": csrf}, headers=SAME).status_code == 405  # not a run id: not a form
    assert not (run.home / "annotations").exists() and load_chain(run.home, "main") is None


def test_review_is_refused_while_a_loop_holds_the_run_lock(run: Run) -> None:
    lock = run.home / "optimizer" / "main" / "lock"
    head = git(run.root, "rev-parse", "tracekit/main")
    with serve(run.home) as ui, httpx.Client(base_url=ui.url) as c:
        csrf = csrf_of(c, "/ui/runs/main/review")
        with open(lock, "a+") as f:  # what a running loop holds (optimizer._session)
            fcntl.flock(f, fcntl.LOCK_EX)
            page = c.get("/ui/runs/main/review").text
            assert "a loop is working on run" in page and 'id="decide-' not in page  # no form while it runs
            r = decide(c, csrf, run.gaming["experiment_id"], "reject", "fake metric")
            assert r.status_code == 409 and "stop it first (`tracekit optimize stop`)" in r.text and "Nothing was recorded" in r.text
            fcntl.flock(f, fcntl.LOCK_UN)
        lock.unlink()
        os.mkfifo(lock)  # a planted FIFO: opening it to read would wait for a writer forever
        started = time.monotonic()
        r = decide(c, csrf, run.gaming["experiment_id"], "reject", "fake metric")
        assert r.status_code == 409 and "is not a plain file" in r.text and time.monotonic() - started < 15
    assert not (run.home / "annotations").exists() and git(run.root, "rev-parse", "tracekit/main") == head


def test_a_fifo_planted_as_a_run_lock_does_not_hang_loop_pid(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lock")
    found: list[Any] = []
    t = threading.Thread(target=lambda: found.append(loop_pid(tmp_path)), daemon=True)
    t.start()
    t.join(10)
    assert found == [None]  # `optimize review`, `status` and `stop` ask it too


def test_annotation_forms_write_the_annotations_table_and_the_pages_list_them(ui_store: UIStore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    ids = ui_store.ids
    trace = ids["agent_trace"]
    with serve(home) as ui, httpx.Client(base_url=ui.url) as c:
        case = c.get(f"/ui/evals/{ids['eval_b']}").text
        case_path = re.search(r'href="(/ui/evals/[^"]+/case\?id=c2&amp;epoch=1)"', case)
        assert case_path is not None
        targets = [(f"/ui/traces/{trace}", "trace", trace, {}),
                   (f"/ui/traces/{trace}", "trace", trace, {"span": "SPAN"}),
                   (f"/ui/experiments/{ids['run_id']}-0001", "experiment", f"{ids['run_id']}-0001", {}),
                   (case_path.group(1).replace("&amp;", "&"), "eval_case", f"{ids['eval_b']}/c2/1", {})]
        span = re.search(r'<option value="([0-9a-f]{16})">', c.get(f"/ui/traces/{trace}").text)
        assert span is not None
        for i, (path, kind, target, extra) in enumerate(targets):
            csrf = csrf_of(c, path)
            fields = {"csrf": csrf, "kind": kind, "target_id": target, "next": path, "label": f"label-{i}", "score": "0.5",
                      "note": PAYLOAD, "author": "ana", **{k: span.group(1) for k in extra}}
            r = c.post("/ui/annotations", data=fields, headers=SAME)
            assert r.status_code == 303 and r.headers["location"] == path + "#annotations", r.text[-500:]
            shown = c.get(path).text
            assert f"label-{i}" in shown and PAYLOAD not in shown and "&lt;/script&gt;&lt;script&gt;window.__pwned=1" in shown
        sql = c.get("/ui/sql", params={"sql": "SELECT target_kind, target_id, label, score, author, source FROM annotations ORDER BY label"})
        assert sql.status_code == 200 and sql.text.count(">ui<") == 4  # found with SQL, like every other table
    rows = [(a["target_kind"], a["target_id"], a["label"], a["score"], a["note"], a["source"]) for a in annotations(home)]
    assert rows == [("trace", trace, "label-0", 0.5, PAYLOAD, "ui"), ("span", f"{trace}/{span.group(1)}", "label-1", 0.5, PAYLOAD, "ui"),
                    ("experiment", f"{ids['run_id']}-0001", "label-2", 0.5, PAYLOAD, "ui"),
                    ("eval_case", f"{ids['eval_b']}/c2/1", "label-3", 0.5, PAYLOAD, "ui")]


def test_a_bad_annotation_gets_a_400_that_says_what_to_send_and_stores_nothing(ui_store: UIStore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    trace = ui_store.ids["agent_trace"]
    with serve(home) as ui, httpx.Client(base_url=ui.url) as c:
        csrf = csrf_of(c, f"/ui/traces/{trace}")
        base = {"csrf": csrf, "kind": "trace", "target_id": trace, "label": "ok", "author": "ana", "next": "//evil.example/"}
        for change, message in [({"score": "high"}, "a number"), ({"author": ""}, "say who you are"), ({"kind": "user"}, "use one of"),
                                ({"target_id": "nope"}, "is not one: expected 32 hex digits"), ({"label": "x" * 300}, "one line of at most"),
                                ({"score": "nan"}, "a finite number"), ({"label": "", "note": ""}, "needs a label, a score or a note")]:
            r = c.post("/ui/annotations", data={**base, **change}, headers=SAME)
            assert r.status_code == 400 and message in r.text, (change, r.text[-600:])
        r = c.post("/ui/annotations", data=base, headers=SAME)
        assert r.status_code == 303 and r.headers["location"] == "/ui/#annotations"  # `next` never leaves this server
    assert len(annotations(home)) == 1


@pytest.fixture
def token_ui(run: Run) -> Iterator[str]:
    with serve(run.home, tokens={"TRACEKIT_TOKEN": FULL, "TRACEKIT_READ_TOKEN": READ}) as ui:
        yield ui.url


def test_only_a_session_of_a_token_that_may_ingest_can_write(run: Run, token_ui: str) -> None:
    eid = run.gaming["experiment_id"]
    with httpx.Client(base_url=token_ui) as reader, httpx.Client(base_url=token_ui) as writer:
        reader.get("/ui/runs/main/review", params={"token": READ})
        page = reader.get("/ui/runs/main/review").text
        assert "opened with a read token, which may look but not write" in page and 'name="csrf"' not in page
        writer.get("/ui/runs/main/review", params={"token": FULL})
        csrf = csrf_of(writer, "/ui/runs/main/review")
        r = decide(reader, csrf, eid, "reject", "fake")  # a read session, even with a writer's csrf
        assert r.status_code == 403 and "read token" in r.text
        bearer = httpx.post(token_ui + "/ui/runs/main/review", headers={**SAME, "Authorization": f"Bearer {FULL}"},
                            data={"csrf": csrf, "experiment_id": eid, "decision": "reject", "why": "x", "author": "a"})
        assert bearer.status_code == 403 and "sign in first" in bearer.text  # a Bearer header opens pages, never forms
        assert not (run.home / "annotations").exists()
        assert decide(writer, csrf, eid, "reject", "prints a fake metric").status_code == 303
    assert [a["label"] for a in annotations(run.home)] == ["reject"]


def test_a_post_from_another_site_or_without_the_session_csrf_is_refused(run: Run, token_ui: str) -> None:
    eid = run.gaming["experiment_id"]
    with httpx.Client(base_url=token_ui) as c, httpx.Client(base_url=token_ui) as other:
        c.get("/ui/", params={"token": FULL})
        other.get("/ui/", params={"token": FULL})
        csrf, other_csrf = csrf_of(c, "/ui/runs/main/review"), csrf_of(other, "/ui/runs/main/review")
        host = token_ui.split("://", 1)[1]
        for headers, why in [({"Sec-Fetch-Site": "cross-site"}, "own pages"), ({"Sec-Fetch-Site": "same-site"}, "own pages"),
                             ({"Sec-Fetch-Site": "none"}, "own pages"), ({}, "own pages"),  # no Sec-Fetch-Site, no Origin
                             ({"Origin": "null"}, "own pages"), ({"Origin": "http://evil.example"}, "own pages")]:
            r = decide(c, csrf, eid, "reject", "x", headers=headers)
            assert r.status_code == 403 and why in r.text, (headers, r.text)
        assert decide(c, other_csrf, eid, "reject", "x").status_code == 403  # another session's token
        assert decide(c, "", eid, "reject", "x").status_code == 403
        assert "csrf field is not this session's" in decide(c, csrf[:-1] + "0", eid, "reject", "x").text
        big = c.post("/ui/annotations", content=b"x" * (2 << 20), headers={**SAME, "content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        as_json = c.post("/ui/annotations", json={"csrf": csrf}, headers=SAME)
        assert as_json.status_code == 415
        assert decide(c, csrf, eid, "reject", "x", headers={"Origin": f"http://{host}"}).status_code == 303  # a client without Sec-Fetch-*
    assert [a["label"] for a in annotations(run.home)] == ["reject"]


def test_writes_need_an_opt_in_and_without_tokens_a_loopback_host(run: Run, tmp_path: Path) -> None:
    with serve(run.home, writes=False) as ui, httpx.Client(base_url=ui.url) as c:
        page = c.get("/ui/runs/main/review")
        assert "set-cookie" not in page.headers and "read-only unless started with --allow-writes" in page.text
        r = decide(c, "x" * 40, run.gaming["experiment_id"], "reject", "x")
        assert r.status_code == 403 and "--allow-writes" in r.text
    with serve(run.home) as ui, httpx.Client(base_url=ui.url) as c:
        csrf = csrf_of(c, "/ui/runs/main/review")
        rebound = decide(c, csrf, run.gaming["experiment_id"], "reject", "x", headers={**SAME, "Host": "attacker.example:80"})
        assert rebound.status_code == 403 and "only taken from a loopback address" in rebound.text  # DNS rebinding
    config = CollectorConfig.from_env(env={}, home=run.home, port=0)  # `tracekit serve` without tokens: its pages only read
    with CollectorThread(config, extensions=[install]) as server, httpx.Client(base_url=server.url) as c:
        page = c.get("/ui/runs/main/review")
        assert page.status_code == 200 and "this collector has no tokens, so its pages only read" in page.text
        r = decide(c, "x" * 40, run.gaming["experiment_id"], "reject", "x")
        assert r.status_code == 403 and "TRACEKIT_TOKEN" in r.text
    assert not (run.home / "annotations").exists()
    assert subprocess.run(["git", "-C", str(run.root), "rev-parse", "tracekit/main"], capture_output=True, text=True
                          ).stdout.strip() == run.gaming["candidate_commit"]


def test_tracekit_serve_with_tokens_takes_annotations_from_a_session_of_its_token(collector_ui: str, ui_store: UIStore) -> None:
    from tests.ui.conftest import TOKEN

    trace = ui_store.ids["agent_trace"]
    with httpx.Client(base_url=collector_ui) as c:
        c.get(f"/ui/traces/{trace}", params={"token": TOKEN})  # TRACEKIT_TOKEN: read and ingest
        csrf = csrf_of(c, f"/ui/traces/{trace}")
        r = c.post("/ui/annotations", headers=SAME, data={"csrf": csrf, "kind": "trace", "target_id": trace, "label": "via-serve",
                                                          "author": "ana", "next": f"/ui/traces/{trace}"})
        assert r.status_code == 303
        assert "via-serve" in c.get(f"/ui/traces/{trace}").text
        found = c.post("/api/sql", headers={"Authorization": f"Bearer {TOKEN}"},
                       json={"sql": "SELECT label, source FROM annotations WHERE label = 'via-serve'"})
        assert found.status_code == 200 and "via-serve" in found.text and '"ui"' in found.text, found.text
