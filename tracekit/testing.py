"""A pytest plugin (auto-loaded when tracekit is installed) to test traced code against a real store.

    def test_my_agent(tracekit_store):
        my_agent("hi")
        rows = tracekit_store.query("SELECT name, status FROM spans").fetchall()
        assert ("my_agent", "ok") in rows
        assert {"name": "my_agent", "status": "ok"} in tracekit_store.rows("SELECT name, status FROM spans")

`tracekit_store` points tracekit at a fresh home under the test's tmp_path (project "test"), and
`query()` / `rows()` flush buffered spans first, so assertions see everything the code under test
emitted. It also sets TRACEKIT_HOME and TRACEKIT_PROJECT for the test's duration, so subprocesses the
test starts (a CLI, a worker, a sandboxed run) write to the same store and `tracekit.query(sql)`
without `home=` reads it. tracekit's own test suite uses this fixture for all its stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT = "test"


class StoreFixture:
    """The test's store: its folder (`home`), its project, and SQL over it."""

    def __init__(self, home: Path, project: str = PROJECT) -> None:
        self.home = home
        self.project = project

    def query(self, sql: str) -> Any:
        """A DuckDB relation over the store, after flushing this process's buffered spans."""
        from ._query import query

        return query(sql, home=self.home)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The answer to `sql` as one dict per row (column name -> value): the easiest form to assert on."""
        rel = self.query(sql)
        return [dict(zip(rel.columns, r)) for r in rel.fetchall()]

    def spans(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM spans ORDER BY start_time")

    def flush(self) -> None:
        from ._config import flush

        flush()


@pytest.fixture
def tracekit_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreFixture]:
    from ._config import configure, flush

    home = tmp_path / "tracekit-home"
    home.mkdir()  # a fresh, empty store: queries before the first span answer without a missing-store warning
    monkeypatch.setenv("TRACEKIT_HOME", str(home))  # for subprocesses, and for calls that take no home
    monkeypatch.setenv("TRACEKIT_PROJECT", PROJECT)
    configure(home=home, project=PROJECT)
    yield StoreFixture(home)
    flush()
