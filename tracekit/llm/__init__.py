"""LLM calls as spans: instrumentation of model SDKs (today `anthropic/`).

    import tracekit
    tracekit.instrument_anthropic()          # every anthropic client, sync and async, streams too

Each call becomes a span of kind `llm` with the GenAI semantic-convention attributes (model, token
usage including cache tokens, time to first token, cost from the store's price table), and the
store's `llm_calls` / `tool_calls` views read them back. The SDK is imported only when you
instrument (the `anthropic` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .anthropic._instrument import instrument_anthropic, uninstrument_anthropic

__all__ = ["instrument_anthropic", "uninstrument_anthropic"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from .anthropic import _instrument

        return getattr(_instrument, name)
    raise AttributeError(f"module 'tracekit.llm' has no attribute {name!r}")
