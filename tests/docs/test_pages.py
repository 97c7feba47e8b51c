"""Every fenced block of README.md and docs/ runs as written (the rules: tests/_support/docblocks.py).

One test per page, run by tests/_support/docrun.py in a folder and environment of its own. Pages
that train tinylm for real, run the main job or optimize are `slow` (`scripts/test` runs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._support import ROOT
from tests._support.docblocks import NOT_RUN, PAGES
from tests._support.docrun import explain, run_page

SLOW = {"README.md", "docs/quickstart.md", "docs/optimizer.md", "docs/tutorial-agent-harness.md"}


def _param(page: Path) -> object:
    rel = str(page.relative_to(ROOT))
    marks = [pytest.mark.slow, pytest.mark.timeout(2700)] if rel in SLOW else []
    return pytest.param(page, id=rel, marks=marks)


@pytest.mark.parametrize("page", [_param(p) for p in PAGES])
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    slow = str(page.relative_to(ROOT)) in SLOW
    p, steps, rc = run_page(page, tmp_path / "page", timeout=2400 if slow else 540)
    NOT_RUN.extend(p.skipped)
    assert rc == 0 and len(steps) == len(p.steps), explain(p, steps, rc)
