"""One recorded Anthropic API call: the `llm` span, its request and response attributes.

`Call.start(resource, kwargs, stream=...)` opens the span from the call's arguments;
`with call.running():` makes it current while the SDK sends the request (the SDK's own spans nest
under it) and records an exception; `call.finish(message)` / `call.fail(exc)` fill in the response
and end the span exactly once. See `tracekit.llm.anthropic._instrument` for what is wrapped and how.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..._config import get_settings
from ..._util.jsonutil import dumps_capped
from ...store._prices import model_cost
from ...store._rows import KIND_ATTR
from . import _content as content

SCOPE = "tracekit.anthropic"
log = logging.getLogger("tracekit")
_REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
}

# True while a recorded call runs in this context (a nested wrapper then passes through)
active: contextvars.ContextVar[bool] = contextvars.ContextVar("tracekit_anthropic_active", default=False)
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
        guard = active.set(True)
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
            active.reset(guard)

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
