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

import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Iterator
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _anthropic_content as content
from ._anthropic_prices import ModelPrice, model_cost, set_model_prices
from ._anthropic_streams import (
    TracedAsyncStream,
    TracedAsyncStreamManager,
    TracedStream,
    TracedStreamManager,
)
from ._config import get_settings
from ._errors import ConfigError
from ._json import dumps_capped
from ._spanrows import KIND_ATTR

SCOPE = "tracekit.anthropic"
log = logging.getLogger("tracekit")
_MODULES = ("anthropic.resources.messages.messages", "anthropic.resources.beta.messages.messages")
_REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
}

_active: contextvars.ContextVar[bool] = contextvars.ContextVar("tracekit_anthropic_active", default=False)
_global = False
_clients: "weakref.WeakSet[Any]" = weakref.WeakSet()  # resources of clients instrumented one by one
_patched: list[tuple[Any, str]] = []
_tracer: otel_trace.Tracer | None = None


def _get_tracer() -> otel_trace.Tracer:
    global _tracer
    if _tracer is None:
        get_settings()
        _tracer = otel_trace.get_tracer(SCOPE)
    return _tracer


class Call:
    """One API call: its span, timings, and the code that fills the span in at the end."""

    __slots__ = ("span", "t0", "first_chunk_at", "first_token_at", "model", "finished")

    def __init__(self, span: otel_trace.Span, model: str | None) -> None:
        self.span = span
        self.t0 = time.perf_counter()
        self.first_chunk_at: float | None = None
        self.first_token_at: float | None = None
        self.model = model
        self.finished = False

    @classmethod
    def start(cls, instance: Any, kwargs: dict[str, Any], *, stream: bool) -> "Call":
        settings = get_settings()
        params = {**(kwargs.get("extra_body") or {}), **kwargs}
        model = params.get("model")
        attrs: dict[str, Any] = {
            KIND_ATTR: "llm",
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.stream": stream,
        }
        if isinstance(model, str):
            attrs["gen_ai.request.model"] = model
        for key, attr in _REQUEST_PARAMS.items():
            value = params.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[attr] = value
        stops = params.get("stop_sequences")
        if isinstance(stops, (list, tuple)) and all(isinstance(s, str) for s in stops):
            attrs["gen_ai.request.stop_sequences"] = list(stops)
        thinking = params.get("thinking")
        if isinstance(thinking, dict):
            if isinstance(thinking.get("type"), str):
                attrs["anthropic.thinking.type"] = thinking["type"]
            if isinstance(thinking.get("budget_tokens"), int):
                attrs["anthropic.thinking.budget_tokens"] = thinking["budget_tokens"]
        if params.get("tool_choice") is not None:
            attrs["anthropic.request.tool_choice"] = dumps_capped(params["tool_choice"], 2048, scrub=False)
        base_url = getattr(getattr(instance, "_client", None), "base_url", None)
        if base_url is not None and getattr(base_url, "host", None):
            attrs["server.address"] = base_url.host
            if base_url.port:
                attrs["server.port"] = base_url.port
        if settings.capture_input:
            cap = settings.max_field_chars
            system = content.system_instructions(params.get("system"))
            if system is not None:
                attrs["gen_ai.system_instructions"] = _encode("input", system, cap)
            attrs["gen_ai.input.messages"] = _encode("input", content.input_messages(params.get("messages")), cap)
            tools = content.tool_definitions(params.get("tools"))
            if tools is not None:
                attrs["gen_ai.tool.definitions"] = _encode("input", tools, cap)
        name = f"chat {model}" if isinstance(model, str) else "chat"
        span = _get_tracer().start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        return cls(span, model if isinstance(model, str) else None)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The request runs with this span current (the SDK's own spans nest under it)."""
        guard = _active.set(True)
        token = otel_context.attach(otel_trace.set_span_in_context(self.span))
        try:
            yield
        except BaseException as exc:
            try:
                self.fail(exc)
            except Exception:
                log.warning("tracekit: could not record an Anthropic error", exc_info=True)
            raise
        finally:
            otel_context.detach(token)
            _active.reset(guard)

    def _timings(self) -> None:
        if self.first_chunk_at is not None:
            self.span.set_attribute("gen_ai.response.time_to_first_chunk", self.first_chunk_at - self.t0)
        if self.first_token_at is not None:
            self.span.set_attribute("tracekit.llm.time_to_first_token", self.first_token_at - self.t0)

    def _response(self, message: Any) -> None:
        span = self.span
        get = content._get
        for key, attr in (("id", "gen_ai.response.id"), ("model", "gen_ai.response.model")):
            value = get(message, key)
            if isinstance(value, str):
                span.set_attribute(attr, value)
        stop = get(message, "stop_reason")
        if isinstance(stop, str):
            span.set_attribute("gen_ai.response.finish_reasons", [stop])
        u = content.usage_numbers(get(message, "usage"))
        total_in = u["input"] + u["cache_read"] + u["cache_write"]
        span.set_attribute("gen_ai.usage.input_tokens", total_in)
        span.set_attribute("gen_ai.usage.output_tokens", u["output"])
        span.set_attribute("gen_ai.usage.cache_read.input_tokens", u["cache_read"])
        span.set_attribute("gen_ai.usage.cache_creation.input_tokens", u["cache_write"])
        if "reasoning" in u:
            span.set_attribute("gen_ai.usage.reasoning.output_tokens", u["reasoning"])
        model = get(message, "model") or self.model
        cost = model_cost(model, u["input"], u["output"], u["cache_read"], u["cache_write"])
        if cost is not None:
            span.set_attribute("tracekit.cost_usd", cost)
        settings = get_settings()
        if settings.capture_output:
            span.set_attribute("gen_ai.output.messages",
                               _encode("output", content.output_messages(message), settings.max_field_chars))

    def finish(self, message: Any, outcome: str | None = None) -> None:
        """End the span with a response (a Message, or a dict accumulated from a stream)."""
        if self.finished:
            return
        self.finished = True
        try:
            self._timings()
            if outcome is not None:
                self.span.set_attribute("tracekit.stream.outcome", outcome)
            if message is not None and content._get(message, "content") is not None:
                self._response(message)
        finally:
            self.span.end()

    def fail(self, exc: BaseException, partial: Any = None, outcome: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        span = self.span
        try:
            self._timings()
            if outcome is not None:
                span.set_attribute("tracekit.stream.outcome", outcome)
            if partial is not None:
                self._response(partial)
            etype, status = content.error_type(exc)
            span.set_attribute("error.type", etype)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            request_id = getattr(exc, "request_id", None)
            if isinstance(request_id, str):
                span.set_attribute("anthropic.request_id", request_id)
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {content.error_message(exc)}"))
        finally:
            span.end()


def _encode(field: str, value: Any, cap: int) -> str:
    redact = get_settings().redact
    if redact is not None:
        try:
            value = redact(field, value)
        except Exception as exc:  # a failing hook must not break the call
            value = {"_capture_error": f"{type(exc).__name__}: {exc}"}
        return dumps_capped(value, cap, scrub=False)
    return dumps_capped(value, cap, scrub=False, already_jsonable=True)


def _traced(instance: Any) -> bool:
    if _active.get():
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
