"""tracekit's web UI: traces, optimizer runs and evals as pages, over the collector's read layer.

    tracekit serve                  # the collector, with the pages at http://127.0.0.1:4318/ui/
    tracekit ui --home .tracekit    # the same pages over a local store, no ingest (port 4319)

    from tracekit.ui import install, create_app, UIConfig
    app = tracekit.collector.create_app(config, extensions=[install])   # pages on a collector app
    app = create_app(UIConfig(home=".tracekit"))                        # pages alone (an ASGI app)

Server-rendered (Jinja2, autoescaped), read-only, every asset served from the package (htmx and
uPlot vendored, see static/vendor/VENDORED.md), a strict Content-Security-Policy, and the
collector's tokens (a session cookie for browsers). See docs/ui.md. Needs the `server` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.applications import Starlette

    from ._app import UIConfig

__all__ = ["UIConfig", "create_app", "install"]


def install(app: "FastAPI") -> None:
    """Mount the pages on a collector app (pass as one of `create_app`'s extensions)."""
    from ._app import install as _install

    _install(app)


def create_app(config: "UIConfig") -> "Starlette":
    """The pages alone over a local store (what `tracekit ui` serves)."""
    from ._app import create_app as _create

    return _create(config)


def __getattr__(name: str) -> Any:
    if name == "UIConfig":
        from ._app import UIConfig

        return UIConfig
    raise AttributeError(f"module 'tracekit.ui' has no attribute {name!r}")
