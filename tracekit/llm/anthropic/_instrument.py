"""Record every Anthropic Messages API call as an `llm` span (OpenTelemetry GenAI conventions).

    import anthropic, tracekit

    tracekit.instrument_anthropic()            # every client, sync and async
    tracekit.instrument_anthropic(client)      # or only this client
    client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...])
    tracekit.query("SELECT model, input_tokens, cost_usd FROM llm_calls").fetchall()

What is wrapped: the public methods `create`, `stream` and `parse` of the SDK's `Messages` and
`AsyncMessages` resources (and their `beta` twins), at class level, the way OpenTelemetry
instrumentations do (`wrapt`). Callers get the same return values, the same exceptions and the same
streams (wrapped in transparent proxies that watch the events go by).

Each call becomes a CLIENT span "chat {model}" with `gen_ai.operation.name=chat`,
`gen_ai.provider.name=anthropic`, the request parameters, the response id / model / finish
reasons, token usage (`gen_ai.usage.input_tokens` counts cached tokens too, as the conventions say;
`gen_ai.usage.cache_read.input_tokens` and `.cache_creation.input_tokens` split them out), the
prompt and answer as GenAI "parts" JSON under the size cap (`gen_ai.input.messages`,
`gen_ai.output.messages`, `gen_ai.system_instructions`, `gen_ai.tool.definitions`; off when
`configure(capture_input=False / capture_output=False)`), time to first chunk / token for streams,
and `tracekit.cost_usd` from the price table (`tracekit.set_model_prices`). API errors set status
error with `error.type` (the API's error type, e.g. `rate_limit_error`) and
`http.response.status_code`, then propagate unchanged.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import wrapt

from ..._config import get_settings
from ..._errors import ConfigError
from ...store._prices import ModelPrice, set_model_prices
from . import _content as content
from ._call import Call, active
from ._streams import (
    TracedAsyncStream,
    TracedAsyncStreamManager,
    TracedStream,
    TracedStreamManager,
)

log = logging.getLogger("tracekit")
_MODULES = ("anthropic.resources.messages.messages", "anthropic.resources.beta.messages.messages")

_global = False
_clients: "weakref.WeakSet[Any]" = weakref.WeakSet()  # resources of clients instrumented one by one
_patched: list[tuple[Any, str]] = []


def _traced(instance: Any) -> bool:
    if active.get():
        return False  # already inside a recorded call (e.g. per-client and global both on)
    return _global or instance in _clients


# ---- wrappers (wrapt signature: wrapped, instance, args, kwargs) ---------------------------------


def _start(instance: Any, kwargs: dict[str, Any], stream: bool) -> Call | None:
    """A Call, or None when recording fails (the API call then runs untraced, never broken)."""
    try:
        return Call.start(instance, kwargs, stream=stream)
    except Exception:
        log.warning("tracekit: could not start recording an Anthropic call", exc_info=True)
        return None


def _done(call: Call, result: Any, stream: bool, sync: bool) -> Any:
    """What the caller gets: the result itself, or the stream wrapped in a recording proxy."""
    try:
        if stream and isinstance(result, _stream_types(sync)):
            return (TracedStream if sync else TracedAsyncStream)(result, call)
        if stream or not isinstance(content._get(result, "content"), list):
            # a raw HTTP response (`with_raw_response` / `with_streaming_response`): not read here
            call.span.set_attribute("tracekit.llm.raw_response", True)
            call.finish(None)
        else:
            call.finish(result)
    except Exception:
        log.warning("tracekit: could not record an Anthropic response", exc_info=True)
    return result


def _stream_types(sync: bool) -> tuple[type, ...]:
    from anthropic import AsyncStream, Stream

    return (Stream,) if sync else (AsyncStream,)


def _materialize(kwargs: dict[str, Any]) -> None:
    """One-shot iterables (generators) the SDK accepts become lists, so recording them does not
    consume what the SDK is about to send."""
    for key in ("messages", "tools", "system", "stop_sequences"):
        value = kwargs.get(key)
        if value is not None and not isinstance(value, (list, tuple, str, bytes, dict)) and iter(value) is value:
            kwargs[key] = list(value)


def _create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _materialize(kwargs)
    call = _start(instance, kwargs, bool(kwargs.get("stream"))) if _traced(instance) else None
    if call is None:
        return wrapped(*args, **kwargs)
    with call.running():
        result = wrapped(*args, **kwargs)
    return _done(call, result, bool(kwargs.get("stream")), sync=True)


async def _acreate(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _materialize(kwargs)
    call = _start(instance, kwargs, bool(kwargs.get("stream"))) if _traced(instance) else None
    if call is None:
        return await wrapped(*args, **kwargs)
    with call.running():
        result = await wrapped(*args, **kwargs)
    return _done(call, result, bool(kwargs.get("stream")), sync=False)


def _stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _materialize(kwargs)
    manager = wrapped(*args, **kwargs)
    if not _traced(instance):
        return manager
    return TracedStreamManager(manager, lambda: _start(instance, kwargs, True))


def _astream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _materialize(kwargs)
    manager = wrapped(*args, **kwargs)
    if not _traced(instance):
        return manager
    return TracedAsyncStreamManager(manager, lambda: _start(instance, kwargs, True))


_WRAPPERS = {
    ("Messages", "create"): _create,
    ("Messages", "parse"): _create,
    ("Messages", "stream"): _stream,
    ("AsyncMessages", "create"): _acreate,
    ("AsyncMessages", "parse"): _acreate,
    ("AsyncMessages", "stream"): _astream,
}


def _patch() -> None:
    if _patched:
        return
    import importlib

    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for (cls_name, method), wrapper in _WRAPPERS.items():
            cls = getattr(module, cls_name, None)
            if cls is None or not hasattr(cls, method):
                continue
            wrapt.wrap_function_wrapper(cls, method, wrapper)
            _patched.append((cls, method))


def _unpatch() -> None:
    while _patched:
        cls, method = _patched.pop()
        current = cls.__dict__.get(method)
        original = getattr(current, "__wrapped__", None)
        if original is not None:
            setattr(cls, method, original)


def instrument_anthropic(client: Any = None, *, prices: dict[str, ModelPrice | dict[str, float]] | None = None) -> None:
    """Record Anthropic Messages API calls as `llm` spans: all clients, or only `client`.

    `prices` adds to or overrides the price table (USD per million tokens) used for `cost_usd`.
    Per-client instrumentation covers that client's `messages` and `beta.messages`; copies made with
    `client.with_options(...)` are separate clients (instrument them too, or instrument globally).
    Calling it again is harmless.
    """
    global _global
    try:
        import anthropic  # noqa: F401
    except ImportError:
        raise ConfigError("instrument_anthropic needs the anthropic SDK: pip install 'tracekit-loop[anthropic]'") from None
    if prices:
        set_model_prices(prices)
    get_settings()  # the provider exists before the first span
    _patch()
    if client is None:
        _global = True
        return
    messages = getattr(client, "messages", None)
    if messages is None or not hasattr(messages, "create"):
        raise ConfigError(f"instrument_anthropic(client): {type(client).__name__} has no .messages.create; "
                          "pass an anthropic.Anthropic / AsyncAnthropic client, or nothing to instrument all")
    _clients.add(messages)
    beta = getattr(getattr(client, "beta", None), "messages", None)
    if beta is not None:
        _clients.add(beta)


def uninstrument_anthropic(client: Any = None) -> None:
    """Stop recording: for one client, or (no argument) for all, restoring the SDK's methods."""
    global _global
    if client is not None:
        for resource in (getattr(client, "messages", None), getattr(getattr(client, "beta", None), "messages", None)):
            if resource is not None:
                _clients.discard(resource)
        return
    _global = False
    _clients.clear()
    _unpatch()


def is_instrumented(client: Any = None) -> bool:
    """Whether calls are recorded: globally (no argument) or for `client`."""
    if client is None:
        return _global
    return _global or getattr(client, "messages", None) in _clients
