"""The tracekit collector: an OTLP/HTTP server that stores spans in the Parquet store and answers SQL.

    tracekit serve --home .tracekit --port 4318
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python my_agent.py   # any OTel SDK

or in Python::

    from tracekit.collector import CollectorConfig, create_app
    app = create_app(CollectorConfig.from_env(home=".tracekit"))   # an ASGI app for uvicorn

See docs/collector.md for the durability guarantees, the SQL endpoint's security model and tokens.
Needs the `server` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._settings import CollectorConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["CollectorConfig", "create_app"]


def create_app(config: CollectorConfig, extensions: Sequence[Callable[["FastAPI"], None]] = ()) -> "FastAPI":
    """The collector's ASGI app (FastAPI); see `tracekit.collector._app`."""
    from ._app import create_app as _create

    return _create(config, extensions)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'tracekit.collector' has no attribute {name!r}")
