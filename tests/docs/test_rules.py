"""The docs runner can fail: each kind of dead snippet fails its page, names the block, and says why.

Pages here are small Markdown texts run through the same plan and runner as README.md and docs/
(tests/_support/docblocks.py, tests/_support/docs_page.py), in a folder of their own.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests._support import ROOT
from tests._support.docblocks import PAGES, blocks, logical_lines, plan
from tests._support.docrun import explain, run_page

FENCE = "```"


def page(*parts: str) -> str:
    return "\n\n".join(parts) + "\n"


def block(lang: str, body: str, marker: str = "") -> str:
    return (marker + "\n" if marker else "") + f"{FENCE}{lang}\n{body.strip()}\n{FENCE}"


def run(tmp_path: Path, text: str) -> tuple[list[dict[str, object]], str]:
    p, steps, rc = run_page(ROOT / "docs" / "synthetic.md", tmp_path / "page", text=text, timeout=240)
    return steps, "" if rc == 0 and len(steps) == len(p.steps) else explain(p, steps, rc)


# The quickstart's first block as it was: `search_docs` had no body, so `docs[0]` raised TypeError.
OLD_QUICKSTART = '''
import tracekit

@tracekit.trace(kind="tool")
def search_docs(query: str, k: int = 3) -> list[str]:
    ...

@tracekit.trace(kind="agent")
def answer(question: str) -> str:
    docs = search_docs(question)
    return docs[0]

answer("How do I reset my password?")
'''


def test_a_python_block_that_raises_fails_its_page_at_that_block(tmp_path: Path) -> None:
    steps, failure = run(tmp_path, page("# p", block("python", OLD_QUICKSTART), block("bash", "tracekit store info")))
    assert "synthetic.md:3 (python) failed" in failure and "TypeError" in failure
    assert len(steps) == 1  # nothing after the failing block runs


def test_later_blocks_see_earlier_names_and_the_shell_keeps_its_state(tmp_path: Path) -> None:
    text = page("# p", block("python", "x = 41"), block("python", "assert x + 1 == 42\nopen('from-python', 'w').write('ok')"),
                block("bash", "mkdir sub && cd sub\nexport GREETING=hi\nA=1"),
                block("bash", 'test "$(basename "$PWD")" = sub && test "$GREETING" = hi && test "$A" = 1\ntest -f ../from-python'))
    steps, failure = run(tmp_path, text)
    assert not failure, failure
    assert [s["kind"] for s in steps] == ["python", "python", "shell", "shell", "shell", "shell", "shell"]


def test_a_failing_tracekit_line_fails_its_page(tmp_path: Path) -> None:
    steps, failure = run(tmp_path, page("# p", block("console", "$ tracekit sql 'SELECT 1'\n1\n$ tracekit traces show no-such-trace")))
    assert "tracekit traces show no-such-trace" in failure and len(steps) == 2


def test_sql_blocks_run_statement_by_statement_and_a_bad_one_fails(tmp_path: Path) -> None:
    sql = "-- fine\nSELECT 1 AS one;\n-- not a table\nSELECT * FROM no_such_table;"
    steps, failure = run(tmp_path, page("# p", block("sql", sql)))
    assert steps[0]["rc"] == 0 and steps[0]["rows"] == 1
    assert "no_such_table" in failure and len(steps) == 2


def test_an_http_error_from_curl_fails_the_page(tmp_path: Path) -> None:
    """The issue's example: /api/sql without a JSON content type answers 422, which `curl -s` hides."""
    text = page("# p", block("bash", "tracekit serve --port 4318"),
                block("bash", "curl -s localhost:4318/api/sql -d '{\"sql\": \"SELECT 1\"}'"))
    steps, failure = run(tmp_path, text)
    assert steps[0]["kind"] == "serve" and steps[0]["rc"] == 0
    assert "422" in failure and "(shell) failed" in failure


def test_a_page_leaves_no_process_behind(tmp_path: Path) -> None:
    text = page("# p", block("bash", "sleep 300 &\necho $! > sleeper.pid"), block("bash", "tracekit serve"),
                block("python", "raise SystemExit('the page fails half-way')"))
    steps, failure = run(tmp_path, text)
    assert "the page fails half-way" in failure
    pid = int((tmp_path / "page" / "sleeper.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie waiting for init is gone for every purpose


def test_blocks_that_cannot_run_are_problems_not_passes() -> None:
    text = page("# p", f"{FENCE}\nno language\n{FENCE}", block("toml", "key = "), block("jsonl", "{}\n{"),
                block("yaml", "a: 1"), block("bash", "true", "<!-- docs-test: skip -->"),
                block("bash", "true", "<!-- docs-test: frobnicate -->"), block("text", "x", "<!-- docs-test: file /etc/x -->"))
    problems = plan(ROOT / "docs" / "synthetic.md", 1234, text).problems
    for expected in ("needs a language", "toml block does not parse", "jsonl block does not parse", "not 'yaml'",
                     "skip` needs a reason", "unknown marker", "relative path"):
        assert any(expected in p for p in problems), (expected, problems)


def test_what_is_not_run_is_listed_with_its_reason() -> None:
    text = page("# p", block("bash", "echo one", "<!-- docs-test: skip needs a GPU -->"),
                block("bash", "pip install 'tracekit-loop[server]'\nscripts/test\n.venv/bin/python bench/ingest.py\ntracekit store info"))
    p = plan(ROOT / "docs" / "synthetic.md", 1234, text)
    reasons = dict(p.skipped)
    assert reasons["docs/synthetic.md:4"] == "needs a GPU"
    assert len(p.skipped) == 4 and [s["text"] for s in p.steps] == ["tracekit store info"]


def test_tests_listen_on_loopback_ports_of_their_own() -> None:
    text = page("# p", block("bash", "tracekit serve --host 0.0.0.0 --port 4318"), block("python", 'URL = "http://127.0.0.1:4318"'),
                block("bash", "scripts/main  # the main job"))
    p = plan(ROOT / "docs" / "synthetic.md", 40001, text)
    assert p.steps[0] == {"kind": "serve", "where": "docs/synthetic.md:3", "text": "tracekit serve --host 127.0.0.1 --port 40001",
                          "port": 40001}
    assert "4318" not in p.steps[1]["text"] and "40001" in p.steps[1]["text"]
    assert p.steps[2]["text"] == f"(cd {ROOT} && TRACEKIT_MAIN_ITERATIONS=1 scripts/main  # the main job\n)"


def test_shell_commands_span_quotes_and_backslashes_and_console_output_is_not_run() -> None:
    text = "curl -d '{\"a\":\n 1}' x\ntracekit sql \\\n  'SELECT 1'   # one line\n# a comment\n"
    assert logical_lines(text, "bash") == ["curl -d '{\"a\":\n 1}' x", "tracekit sql \\\n  'SELECT 1'   # one line"]
    assert logical_lines("$ tracekit demo\nQ: compute: 6 * 7\n$ tracekit store info\n", "console") == ["tracekit demo", "tracekit store info"]


MADE_UP_ID = re.compile(r"'[a-z][\w-]*-\d{4}'")


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_sql_finds_experiments_without_made_up_ids(doc: Path) -> None:
    """An experiment id is '<tag>-<seq>' (main-0004, or main-1-0004 in scripts/main's first run): one written
    into a query answers nothing on the reader's run. Queries select experiments by status and order instead."""
    found = [f"{b.where}: {m}" for b in blocks(doc) if b.lang in ("sql", "bash", "sh", "console") for m in MADE_UP_ID.findall(b.text)]
    assert not found, found
