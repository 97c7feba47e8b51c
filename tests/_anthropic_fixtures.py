"""Fixtures for tests of the anthropic instrumentation (import them into a test module).

    from _anthropic_fixtures import instrumented, rows  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from messages_server import MessagesServer

import tracekit


@pytest.fixture
def instrumented(home: Path) -> Iterator[Path]:
    """tracekit's anthropic instrumentation on for every client, off again after the test."""
    tracekit.instrument_anthropic()
    try:
        yield home
    finally:
        tracekit.uninstrument_anthropic()


def rows(sql: str, home: Path) -> list[dict[str, Any]]:
    """Rows of a query over the test store as dicts."""
    rel = tracekit.query(sql, home=home)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def client(server: MessagesServer, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=retries)


def async_client(server: MessagesServer, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=retries)


TOOLS = [
    {"name": "calculator", "description": "Evaluate an arithmetic expression.",
     "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}},
]
