"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against servers on loopback.

Every page loads without a console error (Chromium reports CSP violations, failed loads and script
errors there), shows what it must, and runs nothing from the data. Screenshots of each page are
saved under pytest's tmp dir (the `screenshots` fixture); set TRACEKIT_UI_SCREENSHOTS=DIR to also
write them there (docs/images/ui/ holds the committed copies that docs/ui.md shows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekit.store._store import Store

from tests.ui.conftest import TOKEN, UIStore


class Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Any) -> None:
        self.page, self.problems = page, []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))

    def open(self, url: str) -> Any:
        response = self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        return response


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))
    extra = os.environ.get("TRACEKIT_UI_SCREENSHOTS")
    if extra:  # the docs' copies: a 128-colour palette keeps each PNG a few tens of KB
        from PIL import Image

        Path(extra).mkdir(parents=True, exist_ok=True)
        Image.open(folder / f"{name}.png").convert("RGB").quantize(128).save(Path(extra) / f"{name}.png", optimize=True)


def test_every_page_loads_without_console_errors(watched: Watched, ui_server: str, ui_store: UIStore, screenshots: Path) -> None:
    ids = ui_store.ids
    pages = {
        "traces": "/ui/traces",
        "trace": f"/ui/traces/{ids['agent_trace']}",
        "runs": "/ui/runs",
        "run": f"/ui/runs/{ids['run_id']}",
        "experiment": f"/ui/experiments/{ids['run_id']}-0001",
        "evals": "/ui/evals",
        "eval-run": f"/ui/evals/{ids['eval_b']}",
        "compare": f"/ui/evals/compare?a={ids['eval_a']}&b={ids['eval_b']}",
        "sql": "/ui/sql?sql=SELECT+name%2C+kind%2C+count(*)+AS+n+FROM+spans+GROUP+BY+ALL+ORDER+BY+n+DESC",
        "hostile": f"/ui/traces/{ids['hostile_trace']}",
        "eval-case": f"/ui/evals/{ids['eval_b']}/case?id={ids['regressed']}&epoch=1",
        "review-readonly": f"/ui/runs/{ids['run_id']}/review",
    }
    for name, path in pages.items():
        response = watched.open(ui_server + path)
        assert response.status == 200, (name, response.status)
        _shot(watched.page, screenshots, name)
    assert watched.problems == []
    assert len(list(screenshots.glob("*.png"))) >= len(pages)


def test_trace_page_shows_the_spans_and_the_conversation(watched: Watched, ui_server: str, ui_store: UIStore) -> None:
    page = watched.page
    watched.open(f"{ui_server}/ui/traces/{ui_store.ids['agent_trace']}")
    names = page.locator("#waterfall .wf-name").all_inner_texts()
    assert any("calc_agent" in n for n in names) and any("calculator" in n for n in names)
    assert sum("chat claude-ui-test" in n for n in names) == 2  # two model turns (instrumentation spans)
    convo = page.locator(".conversation").first
    text = convo.inner_text()
    for expected in ("You are a careful calculator agent.", "Compute: 6 * 7", "I should use the calculator for 6 * 7.",
                     "calculator", "Let me use the calculator.", "time to first token" if False else "tokens in"):
        assert expected in text, expected
    assert convo.locator(".part.thinking").count() == 1 and convo.locator(".part.tool-call").count() == 1
    second = page.locator(".conversation").nth(1).inner_text()
    assert "42" in second and "The result is 42." in second  # the tool result sent back, and the answer
    assert page.locator(".conversation .part.tool-result").count() >= 1
    assert "$" in page.locator("dl.facts").first.inner_text()  # the trace's cost
    assert watched.problems == []


def test_streamed_call_shows_time_to_first_token(watched: Watched, ui_server: str) -> None:
    page = watched.page
    watched.open(f"{ui_server}/ui/traces?q=2+%2B+3")
    page.locator("#traces tbody a").first.click()
    page.wait_for_load_state("networkidle")
    assert "time to first token" in page.locator(".conversation").first.inner_text()
    assert watched.problems == []


def test_experiments_chart_has_one_point_per_experiment(watched: Watched, ui_server: str, ui_store: UIStore) -> None:
    page = watched.page
    watched.open(f"{ui_server}/ui/runs/{ui_store.ids['run_id']}")
    chart = page.locator("#progress-chart")
    chart.locator("canvas").wait_for()
    rows = page.locator("#experiments tbody tr").count()
    assert rows == ui_store.ids["experiments"] == int(chart.get_attribute("data-points"))
    statuses = set(page.locator("#experiments tbody .pill").all_inner_texts())
    assert {"baseline", "keep", "discard", "crash", "invalid"} <= statuses
    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)  # hover the last experiment
    assert "raise the learning rate" in page.locator("#progress-chart-hover").inner_text()
    assert watched.problems == []


def test_compare_page_names_the_regressed_case(watched: Watched, ui_server: str, ui_store: UIStore) -> None:
    page = watched.page
    watched.open(f"{ui_server}/ui/evals")
    page.select_option("#compare-form select[name=a]", ui_store.ids["eval_a"])
    page.select_option("#compare-form select[name=b]", ui_store.ids["eval_b"])
    page.click("#compare-form button")
    page.wait_for_load_state("networkidle")
    assert page.locator("#regressions .case-id").all_inner_texts() == [ui_store.ids["regressed"]]
    assert page.locator("#fixes .case-id").all_inner_texts() == [ui_store.ids["fixed"]]
    assert "±" in page.locator("#delta-accuracy").inner_text()
    assert watched.problems == []


def test_sql_console_returns_rows_and_downloads_csv(watched: Watched, ui_server: str) -> None:
    page = watched.page
    watched.open(f"{ui_server}/ui/sql")
    page.fill("textarea[name=sql]", "SELECT case_id, passed FROM eval_results ORDER BY case_id")
    page.click("#sql-form button")
    page.wait_for_load_state("networkidle")
    assert page.locator("#sql-result tbody tr").count() == 8 and "8 rows" in page.locator("#sql-status").inner_text()
    with page.expect_download() as info:
        page.click("#download-csv")
    lines = Path(info.value.path()).read_text().splitlines()
    assert lines[0] == '"case_id","passed"' and len(lines) == 9
    assert watched.problems == []


def test_html_payloads_render_as_text_and_run_nothing(watched: Watched, ui_server: str, ui_store: UIStore) -> None:
    from tests._support.ui_store import PAYLOAD

    page = watched.page
    ids = ui_store.ids
    for path in (f"/ui/traces/{ids['hostile_trace']}", "/ui/traces?q=hostile", f"/ui/runs/{ids['run_id']}",
                 f"/ui/experiments/{ids['run_id']}-0001", f"/ui/evals/{ids['eval_b']}",
                 f"/ui/evals/compare?a={ids['eval_a']}&b={ids['eval_b']}", f"/ui/runs/{ids['run_id']}/review",
                 f"/ui/evals/{ids['eval_b']}/case?id={ids['regressed']}&epoch=1"):
        watched.open(ui_server + path)
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("img, .pwned, script:not([src]):not([type='application/json'])").count() == 0, path  # no element from the data
        assert PAYLOAD[:40] in page.locator("main").inner_text(), path  # shown, as text (a scorer's explanation cuts it short)
    assert watched.problems == []


def test_running_optimization_page_updates_as_experiments_finish(watched: Watched, ui_server: str, ui_store: UIStore) -> None:
    import fcntl

    run = ui_store.ids["run_id"]
    page = watched.page
    lock = ui_store.home / "optimizer" / run / "lock"
    with open(lock, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # what the loop holds while it runs
        watched.open(f"{ui_server}/ui/runs/{run}")
        before = page.locator("#experiments tbody tr").count()
        written = Store(ui_store.home).write("experiments", [{
            "experiment_id": f"{run}-0099", "run_id": run, "seq": 99, "status": "discard", "metric": 2.2, "metric_name": "val_loss",
            "direction": "min", "parent_metric": 1.5, "improvement": -0.7, "threshold": 0.0, "proposer": "scripted",
            "description": "a late experiment"}])
        try:
            page.locator(f"#experiments a:text-is('{run}-0099')").wait_for(timeout=20_000)  # swapped in without a reload
            assert page.locator("#experiments tbody tr").count() == before + 1
            page.wait_for_function("(n) => document.querySelector('#progress-chart').dataset.points === String(n)", arg=before + 1)
        finally:
            assert written is not None
            written.unlink()
            fcntl.flock(f, fcntl.LOCK_UN)
    assert watched.problems == []


def test_sign_in_with_a_token_link_then_browse(watched: Watched, collector_ui: str, screenshots: Path) -> None:
    page = watched.page
    response = watched.open(collector_ui + "/ui/runs")
    assert response.status == 401 and page.locator("form.login").count() == 1
    _shot(page, screenshots, "login")
    watched.problems.clear()  # the 401 of the login page itself is logged as a failed load
    watched.open(f"{collector_ui}/?token={TOKEN}")
    assert page.url.endswith("/ui/traces") and TOKEN not in page.content()
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("tracekit_session", True, "Strict")]
    watched.open(collector_ui + "/ui/runs")
    assert page.locator("#runs tbody tr").count() >= 1
    page.click("form.logout button")  # signing out ends the session: the next page asks again
    page.wait_for_load_state("networkidle")
    assert page.locator("form.login").count() == 1, page.content()[:2000]
    watched.problems.clear()  # (the login page's 401)
    watched.open(collector_ui + "/docs")
    page.locator(".swagger-ui .info").wait_for(timeout=20_000)  # Swagger UI rendered from the vendored files
    time.sleep(0.2)
    _shot(page, screenshots, "docs")
    assert watched.problems == []


# -- the pages' writes (`tracekit ui --allow-writes`): the review of a run's keeps, annotations --------------------


def test_review_in_the_browser_rejects_a_gaming_keep_and_the_branch_and_ledger_change(watched: Watched, tmp_path: Path,
                                                                                   screenshots: Path) -> None:
    """As tests/optimizer/test_morning_after.py does with `tracekit optimize review`, from the pages."""
    from tracekit.optimizer._review import load_chain
    from tracekit.ui import UIConfig
    from tracekit.ui._server import UIThread

    from tests._support.gaming import GAMING_FAKE_METRIC, HONEST_LR, make_gaming_target
    from tests._support.optimizer import ScriptedProposer, git, optimize

    root = make_gaming_target(tmp_path / "fit")
    rows = {r["description"]: r for r in optimize(root, proposer=ScriptedProposer([HONEST_LR, GAMING_FAKE_METRIC]), iterations=2).rows}
    honest, gaming = rows["a higher learning rate converges further"], rows["report a better loss"]
    assert git(root, "rev-parse", "tracekit/main") == gaming["candidate_commit"]  # the loop kept the fake metric
    page = watched.page
    with UIThread(UIConfig(home=root / ".tracekit", port=0, allow_writes=True)) as ui:
        watched.open(ui.url + "/ui/runs/main")
        assert "1 with alarms" in page.locator("#run-body").inner_text()
        page.click("#review-link")
        page.wait_for_load_state("networkidle")
        keep = page.locator(f"#keep-{gaming['experiment_id']}")
        assert "ALARM touches_metric_output" in keep.inner_text() and "report a better loss" in keep.inner_text()
        assert page.locator(f"#keep-{honest['experiment_id']} .alarm").count() == 0
        _shot(page, screenshots, "review")
        form = page.locator(f"#decide-{gaming['experiment_id']}")
        form.locator("textarea[name=why]").fill("prints a fake metric")
        form.locator("input[name=author]").fill("ana")
        form.locator("button[value=reject]").click()
        page.wait_for_load_state("networkidle")
        assert page.locator("#chain-rejected").inner_text() == gaming["experiment_id"]
        assert page.locator("#chain-links").inner_text() == honest["experiment_id"]
        assert page.locator(f"#reviewed-{gaming['experiment_id']}").inner_text().startswith("Reviewed: reject by ana: prints a fake metric")
        _shot(page, screenshots, "review-after")
        watched.open(f"{ui.url}/ui/experiments/{gaming['experiment_id']}")  # the decision is an annotation of the experiment
        assert "prints a fake metric" in page.locator("#annotation-list").inner_text()
    assert watched.problems == []
    assert git(root, "rev-parse", "tracekit/main") == honest["candidate_commit"]  # the branch: the honest change only
    chain = load_chain(root / ".tracekit", "main")
    assert chain is not None and chain.rejected == [gaming["experiment_id"]]


def test_annotate_a_trace_in_the_browser_and_find_the_row_with_sql(watched: Watched, ui_store: UIStore, tmp_path: Path,
                                                                   screenshots: Path) -> None:
    import shutil

    from tracekit.ui import UIConfig
    from tracekit.ui._server import UIThread

    home = tmp_path / "home"
    shutil.copytree(ui_store.home, home)
    trace = ui_store.ids["agent_trace"]
    page = watched.page
    with UIThread(UIConfig(home=home, port=0, allow_writes=True)) as ui:
        watched.open(f"{ui.url}/ui/traces/{trace}")
        form = page.locator("#annotate-form")
        form.locator("input[name=label]").fill("wrong-tool")
        form.locator("input[name=score]").fill("0")
        form.locator("textarea[name=note]").fill("used the calculator for 6 * 7 <b>twice</b>")
        form.locator("input[name=author]").fill("ana")
        form.locator("button[type=submit]").click()
        page.wait_for_load_state("networkidle")
        assert page.url.endswith(f"/ui/traces/{trace}#annotations")
        listed = page.locator("#annotation-list").inner_text()
        assert "wrong-tool" in listed and "<b>twice</b>" in listed  # the note as text
        _shot(page, screenshots, "annotations")
        watched.open(f"{ui.url}/ui/sql")
        page.fill("textarea[name=sql]", "SELECT target_kind, target_id, label, score, author, source FROM annotations")
        page.click("#sql-form button")
        page.wait_for_load_state("networkidle")
        cells = page.locator("#sql-result tbody tr").first.locator("td").all_inner_texts()
        assert cells == ["trace", trace, "wrong-tool", "0.0", "ana", "ui"], cells
    assert watched.problems == []
