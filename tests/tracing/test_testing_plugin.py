"""The pytest plugin users get with tracekit (tracekit.testing), which this suite uses for all its stores."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import tracekit
import tracekit.testing
from tracekit.testing import StoreFixture


def test_the_plugin_is_loaded_through_its_installed_entry_point(pytestconfig: pytest.Config) -> None:
    """No conftest names tracekit.testing: `tracekit_store` reaches every test as it reaches users' tests."""
    [ep] = [ep for ep in entry_points(group="pytest11") if ep.value == "tracekit.testing"]
    assert pytestconfig.pluginmanager.get_plugin(ep.name) is tracekit.testing


def test_subprocesses_of_a_test_write_to_its_store(tracekit_store: StoreFixture, tmp_path: Path) -> None:
    """A CLI or worker the test starts inherits the store and the project, wherever it runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = textwrap.dedent("""
        import tracekit
        with tracekit.span("in-a-child"):
            pass
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert tracekit_store.rows("SELECT name, project FROM spans") == [{"name": "in-a-child", "project": "test"}]
    assert not (elsewhere / ".tracekit").exists()


def test_rows_see_spans_still_buffered(tracekit_store: StoreFixture) -> None:
    """`rows()` flushes first and answers one dict per row, so an assertion right after the code sees its spans."""
    with tracekit.span("outer"):
        with tracekit.span("inner"):
            pass
    got = tracekit_store.rows("SELECT name, parent_span_id IS NULL AS root FROM spans ORDER BY name")
    assert got == [{"name": "inner", "root": False}, {"name": "outer", "root": True}]
    assert [s["name"] for s in tracekit_store.spans()] == ["outer", "inner"]
