"""A pytest plugin (auto-loaded when tracekit is installed) to test traced code against a real store.

    def test_my_agent(tracekit_store):
        my_agent("hi")
        rows = tracekit_store.query("SELECT name, status FROM spans").fetchall()
        assert ("my_agent", "unset") in rows

`tracekit_store` points tracekit at a fresh home under the test's tmp_path, and `query()` flushes
buffered spans first, so assertions see everything the code under test emitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class StoreFixture:
    def __init__(self, home: Path) -> None:
        self.home = home

    def query(self, sql: str) -> Any:
        from ._query import query

        return query(sql, home=self.home)

    def spans(self) -> list[dict[str, Any]]:
        rel = self.query("SELECT * FROM spans ORDER BY start_time")
        return [dict(zip(rel.columns, r)) for r in rel.fetchall()]

    def flush(self) -> None:
        from ._config import flush

        flush()


@pytest.fixture
def tracekit_store(tmp_path: Path) -> Iterator[StoreFixture]:
    from ._config import configure, flush

    home = tmp_path / "tracekit-home"
    configure(home=home, project="test")
    yield StoreFixture(home)
    flush()
