"""The fenced code blocks of README.md and docs/, and the plan that runs a page's blocks as written.

tests/docs/ runs every page with this. Why our own collector and not pytest-markdown-docs: that plugin
runs Python fences inside the pytest process (where tracekit's global provider and the suite's own
store live) and knows nothing of shell blocks, while most of what a newcomer types here is `tracekit
...` at a prompt. So a page becomes a *plan*, run by tests/_support/docs_page.py in a fresh interpreter
of its own next to one persistent bash (see there), and the rules below are all there is to it.

A fence's language says what happens to it:

- ``python``: executed in the page's interpreter, blocks in order, one namespace (later blocks use
  names from earlier ones);
- ``bash`` / ``sh``: every logical line (a trailing backslash continues it) runs in the page's bash,
  in order, so `cd`, `export` and shell variables carry over; ``console``: only the `$ ` lines run,
  the others are the output they show;
- ``sql``: every statement runs through `tracekit sql --format json` in the page's shell;
- ``toml``, ``json`` and ``jsonl``: parsed (a fragment that does not parse is a failure); ``text``: shown
  output, trees and diagrams, never run. A fence with no language, or another one, is an error.

A marker, an HTML comment on a line right above the fence (several may stack; a blank line may
separate them from the fence), changes it:

- ``<!-- docs-test: skip REASON -->``: not run; the reason is listed at the end of the test session;
- ``<!-- docs-test: file PATH -->``: written to PATH (relative to the page's folder), not run; a
  later block runs it (`python PATH`, `tracekit eval run PATH`, ...);
- ``<!-- docs-test: needs ANTHROPIC_API_KEY -->``: the block calls Claude; the page runs with a
  placeholder key and ANTHROPIC_BASE_URL at the suite's local Messages API server, so it runs too;
- ``<!-- docs-test: home PATH -->`` (sql blocks): the store the statements read, as `--home PATH`.

Lines of shell blocks that cannot run inside a test are not run, each with its reason listed
(`RULES`); `tracekit serve` lines start a collector in the background (a later one replaces it);
in shell and Python blocks the page's free loopback port stands in for the documented 4318 and
`0.0.0.0` becomes 127.0.0.1 (tests listen on loopback only); `scripts/...` lines run from the repository root, the
main job with one experiment (`TRACEKIT_MAIN_ITERATIONS=1`).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from markdown_it import MarkdownIt

from . import DOCS, ROOT

PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
RUN = {"python", "bash", "sh", "console", "sql"}
CHECK = {"toml", "json", "jsonl"}
SHOWN = {"text"}
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<verb>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
VERBS = {"skip", "file", "needs", "home"}
NOT_RUN: list[tuple[str, str]] = []  # (where, why) of this session's pages; tests/docs/conftest.py prints it
DOC_PORT = "4318"  # the collector's documented default port; a page's free port stands in for it

# Shell lines a test cannot run as written: (pattern, why). Each one skipped is listed with its reason.
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^pip install\b"), "installs from a package index; the suite runs in the .venv scripts/setup made"),
    (re.compile(r"^scripts/test\b"), "the whole test suite, this test included"),
    (re.compile(r"^\.venv/bin/python bench/"), "a benchmark (minutes, and bench/ingest.py installs Arize Phoenix); run by hand"),
]


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its markers (verb -> argument)."""

    page: Path
    line: int
    lang: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name}:{self.line}"


@dataclass
class Plan:
    """What the page runner does, in order, and what the page needs around it."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    problems: list[str] = field(default_factory=list)  # blocks that fail without running (untagged, bad TOML, ...)
    needs_claude: bool = False
    serves: bool = False


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of a Markdown page (nested in lists too), with the markers right above it."""
    source = page.read_text() if text is None else text
    lines = source.splitlines()
    found = []
    for tok in MarkdownIt("commonmark").parse(source):
        if tok.type != "fence" or tok.map is None:
            continue
        first = tok.map[0]
        markers: dict[str, str] = {}
        above = first - 1
        if above >= 0 and not lines[above].strip():
            above -= 1
        while above >= 0 and (m := MARKER.match(lines[above])):
            markers[m["verb"]] = m["arg"]
            above -= 1
        found.append(Block(page, first + 1, tok.info.strip().split(" ")[0], tok.content, markers))
    return found


def _complete(line: str) -> bool:
    """False while a quote is open or the line ends in a backslash: the command goes on below."""
    if line.endswith("\\"):
        return False
    try:
        shlex.split(line, comments=True)
    except ValueError:
        return False
    return True


def logical_lines(text: str, lang: str) -> list[str]:
    """Commands of a shell block: lines joined while a quote is open or on a trailing backslash;
    `console` keeps the `$ ` lines (and what continues them) only."""
    out: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if pending is None:
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        else:
            line = pending + "\n" + line
        if not _complete(line):
            pending = line
            continue
        pending = None
        out.append(line.strip())
    if pending is not None:
        out.append(pending.strip())
    return out


def statements(sql: str) -> list[str]:
    """The statements of a sql block, split by DuckDB's own parser (comments and strings are safe)."""
    con = duckdb.connect()
    try:
        return [s.query.strip() for s in con.extract_statements(sql)]
    finally:
        con.close()


def plan(page: Path, port: int, text: str | None = None) -> Plan:
    """The page as steps for tests/_support/docs_page.py; problems and skips are collected, not raised."""
    p = Plan()
    for b in blocks(page, text):
        m = b.markers
        if unknown := set(m) - VERBS:
            p.problems.append(f"{b.where}: unknown marker `docs-test: {min(unknown)}` (known: {', '.join(sorted(VERBS))})")
            continue
        if "skip" in m:
            if not m["skip"]:
                p.problems.append(f"{b.where}: `docs-test: skip` needs a reason after it")
            p.skipped.append((b.where, m["skip"] or "(no reason given)"))
            continue
        if "needs" in m:
            if m["needs"] != "ANTHROPIC_API_KEY":
                p.problems.append(f"{b.where}: `docs-test: needs` knows ANTHROPIC_API_KEY only, not {m['needs']!r}")
            p.needs_claude = True
        if b.lang not in RUN | CHECK | SHOWN:
            p.problems.append(f"{b.where}: a fence needs a language ({', '.join(sorted(RUN | CHECK | SHOWN))}), "
                              f"not {b.lang!r}: tag shown output as ```text")
            continue
        if b.lang in CHECK and (problem := _parses(b)):
            p.problems.append(problem)
            continue
        if "file" in m:
            path = m["file"]
            if not path or path.startswith("/") or ".." in Path(path).parts:
                p.problems.append(f"{b.where}: `docs-test: file` needs a relative path inside the page's folder")
                continue
            p.steps.append({"kind": "file", "where": b.where, "path": path, "text": b.text})
            continue
        if b.lang in CHECK:
            continue
        if b.lang in SHOWN:
            continue
        if b.lang == "python":
            p.steps.append({"kind": "python", "where": b.where, "text": _loopback(b.text, port)})
        elif b.lang == "sql":
            home = f" --home {m['home']}" if "home" in m else ""
            for stmt in statements(b.text):
                p.steps.append({"kind": "sql", "where": b.where, "text": stmt, "home": home})
        else:
            for line in logical_lines(b.text, b.lang):
                _shell_step(p, b, line, port)
    return p


def _parses(b: Block) -> str | None:
    try:
        if b.lang == "toml":
            tomllib.loads(b.text)
        elif b.lang == "json":
            json.loads(b.text)
        else:
            for line in filter(str.strip, b.text.splitlines()):
                json.loads(line)
    except ValueError as exc:
        return f"{b.where}: the {b.lang} block does not parse: {exc}"
    return None


def _loopback(text: str, port: int) -> str:
    """The page's free port for the documented 4318; 127.0.0.1 for every interface (tests bind loopback only)."""
    return text.replace(DOC_PORT, str(port)).replace("0.0.0.0", "127.0.0.1")


def _shell_step(p: Plan, b: Block, line: str, port: int) -> None:
    for pattern, why in RULES:
        if pattern.search(line):
            p.skipped.append((f"{b.where} `{line.splitlines()[0]}`", why))
            return
    cmd = _loopback(line, port)
    if re.match(r"^scripts/", cmd):  # the newline ends the line's own comment before the parenthesis
        main = "TRACEKIT_MAIN_ITERATIONS=1 " if re.match(r"^scripts/main\b", cmd) else ""
        cmd = f"(cd {ROOT} && {main}{cmd}\n)"
    if re.match(r"^tracekit serve\b", cmd) and "--help" not in cmd:
        p.serves = True
        p.steps.append({"kind": "serve", "where": b.where, "text": cmd, "port": port})
        return
    p.steps.append({"kind": "shell", "where": b.where, "text": cmd})
