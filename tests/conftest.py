"""Shared fixtures. Every test gets its own TRACEKIT_HOME under tmp_path (see `home`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (servers) import by name

# Never let a developer's key or endpoint leak into tests: they talk to loopback servers only.
for _var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "TRACEKIT_OTLP_ENDPOINT", "TRACEPARENT"):
    os.environ.pop(_var, None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh store, with tracekit configured to write there (and TRACEKIT_HOME for subprocesses)."""
    import tracekit

    h = tmp_path / "home"
    monkeypatch.setenv("TRACEKIT_HOME", str(h))
    monkeypatch.setenv("TRACEKIT_PROJECT", "test")
    tracekit.configure(home=h, project="test")
    yield h
    tracekit.flush()


@pytest.fixture
def venv_python() -> str:
    return sys.executable
