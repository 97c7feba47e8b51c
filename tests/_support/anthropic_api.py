"""The anthropic SDK pointed at the local Messages API server, and rows of a query over the test store.

The `instrumented` and `messages_server` fixtures are in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic

from tracekit.testing import StoreFixture

from .messages_server import MessagesServer


def rows(sql: str, home: Path) -> list[dict[str, Any]]:
    """Rows of a query over the store at `home` as dicts (the plugin's `StoreFixture.rows`)."""
    return StoreFixture(home).rows(sql)


def client(server: MessagesServer, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=retries)


def async_client(server: MessagesServer, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=retries)


TOOLS = [
    {"name": "calculator", "description": "Evaluate an arithmetic expression.",
     "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}},
]
