"""Fixtures every folder may use. Stores come from the shipped plugin (tracekit.testing's `tracekit_store`).

Helpers are a package (`tests._support`); fixtures used by one folder live in that folder's conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit.testing import StoreFixture

from tests._support.messages_server import MessagesServer

# Never let a developer's key or endpoint leak into tests: they talk to loopback servers only.
for _var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "TRACEKIT_OTLP_ENDPOINT", "TRACEPARENT"):
    os.environ.pop(_var, None)


@pytest.fixture
def home(tracekit_store: StoreFixture) -> Path:
    """The folder of the test's store (the plugin's `tracekit_store`): tracekit writes there, and so do subprocesses."""
    return tracekit_store.home


@pytest.fixture
def messages_server() -> Iterator[MessagesServer]:
    """The local Messages API server (tests._support.messages_server) on 127.0.0.1, stopped after the test."""
    server = MessagesServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def instrumented(home: Path) -> Iterator[Path]:
    """tracekit's anthropic instrumentation on for every client, off again after the test (llm/, trajectories/)."""
    import tracekit

    tracekit.instrument_anthropic()
    try:
        yield home
    finally:
        tracekit.uninstrument_anthropic()
