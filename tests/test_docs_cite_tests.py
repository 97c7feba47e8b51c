"""The docs prove their claims by naming tests: every test file and test they name exists where they say.

docs/security.md and docs/collector.md are threat models whose last column is a test; the examples'
READMEs and the tutorials point at the tests that run them. A moved or renamed test must take its
citations along, or the claim loses its proof without anyone noticing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests._support import DOCS, EXAMPLES, ROOT

TESTS = ROOT / "tests"
CITING = sorted([ROOT / "README.md", *DOCS.rglob("*.md"), *EXAMPLES.glob("*/README.md")])
FILE = re.compile(r"(?<![\w/.])(tests/(?:\w+/)*\w+\.py|(?:\w+/)*test_\w+\.py)")
CODE = re.compile(r"`([^`\n]+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")}


def _resolve(cited: str) -> Path:
    return ROOT / cited if cited.startswith("tests/") else TESTS / cited


ALL_TESTS = {name for path in TESTS.rglob("test_*.py") for name in _tests_in(path)}


@pytest.mark.parametrize("doc", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_cite_tests_that_exist(doc: Path) -> None:
    text = doc.read_text()
    problems = []
    for cited in FILE.findall(text):
        if not _resolve(cited).is_file():
            problems.append(f"{cited}: no such file under tests/")
    for span in CODE.findall(text):
        for cited, name in re.findall(r"((?:\w+/)*test_\w+\.py)::(test_\w+)", span):
            if _resolve(cited).is_file() and name not in _tests_in(_resolve(cited)):
                problems.append(f"{cited}::{name}: no such test in that file")
        for name in re.findall(r"(?:^|::)(test_\w+)(?![\w.])", span):
            if name not in ALL_TESTS:
                problems.append(f"{name}: no test of that name under tests/")
    assert not problems, f"{doc.relative_to(ROOT)} cites tests that moved or were renamed: " + "; ".join(problems)
