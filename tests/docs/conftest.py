"""The docs tests' session summary: every block or shell line that did not run, and why.

No block is skipped silently. Each page test records what it did not run (a `docs-test: skip`
marker's reason, or a rule of tests/_support/docblocks.py such as `pip install`); this prints the
list after the results, whatever their outcome.
"""

from __future__ import annotations

import pytest

from tests._support.docblocks import NOT_RUN


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not NOT_RUN:
        return
    terminalreporter.section("docs blocks and lines not run, and why")
    for where, why in sorted(set(NOT_RUN)):
        terminalreporter.write_line(f"{where}: {why}")
