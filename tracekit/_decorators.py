"""`@trace`, `span()` and `log_metric()`: the span-emitting path. Imports nothing heavy.

    @tracekit.trace                      # name = qualified function name, kind "span"
    def plan(goal): ...

    @tracekit.trace(kind="tool", name="calculator")
    async def calc(expr: str) -> float: ...

    with tracekit.span("retrieve", kind="chain", k=5) as s:
        s.set_input({"query": q}); docs = search(q); s.set_output(docs)

    tracekit.log_metric("loss", 2.31, step=100)

Inputs are the bound arguments (minus `self` / `cls`), outputs the return value (for generators,
the yielded items), stored as JSON under the size cap in the span attributes `tracekit.input` /
`tracekit.output` (the exporter promotes them to the `input` / `output` columns). Exceptions set status error, are recorded
with their stack trace and re-raised unchanged.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import Token
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from ._config import get_settings, get_tracer
from ._util.jsonutil import dumps_capped
from .store._rows import INPUT_ATTR, IO_ATTR, KIND_ATTR, KINDS

F = TypeVar("F", bound=Callable[..., Any])

MAX_YIELDED_ITEMS = 1000
METRIC_EVENT = "tracekit.metric"


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    return kind


def _kind_attrs(kind: str) -> dict[str, Any]:
    return {KIND_ATTR: kind}


def _encode(field: str, value: Any) -> str:
    s = get_settings()
    if s.redact is not None:
        value = s.redact(field, value)
    return dumps_capped(value, s.max_field_chars, scrub=s.scrub)


def _io_text(field: str, value: Any) -> str:
    try:
        return _encode(field, value)
    except Exception as exc:  # a redaction hook that fails must not break the traced program
        return dumps_capped({"_capture_error": f"{type(exc).__name__}: {exc}"})


def _set_io(span: otel_trace.Span, field: str, value: Any) -> None:
    span.set_attribute(IO_ATTR[field], _io_text(field, value))


def _record_error(span: otel_trace.Span, exc: BaseException) -> None:
    span.record_exception(exc, escaped=True)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _ArgCapture:
    """Maps call arguments to a dict of parameter names, cheaply when the signature is simple."""

    __slots__ = ("sig", "names", "skip_first", "simple")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            self.sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.sig = None
        params = list(self.sig.parameters.values()) if self.sig else []
        self.skip_first = bool(params) and params[0].name in ("self", "cls")
        self.names = [p.name for p in params]
        self.simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
        )

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.simple and len(args) <= len(self.names):
            bound = dict(zip(self.names, args))
            bound.update(kwargs)
        elif self.sig is not None:
            try:
                ba = self.sig.bind(*args, **kwargs)
                bound = dict(ba.arguments)
            except TypeError:
                bound = {"args": list(args), "kwargs": kwargs}
        else:
            bound = {"args": list(args), "kwargs": kwargs}
        if self.skip_first and self.names and self.names[0] in bound:
            bound.pop(self.names[0])
        return bound


@overload
def trace(fn: F) -> F: ...
@overload
def trace(
    fn: None = None,
    *,
    name: str | None = None,
    kind: str = "span",
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    attributes: dict[str, Any] | None = None,
) -> Callable[[F], F]: ...


def trace(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    kind: str = "span",
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    attributes: dict[str, Any] | None = None,
) -> Any:
    """Record each call of the function as a span (sync, async, generator, async generator)."""
    _check_kind(kind)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        span_name = name or func.__qualname__
        static = _kind_attrs(kind)
        if name is not None:
            static["code.function"] = func.__qualname__
        if attributes:
            static.update(attributes)
        capture = _ArgCapture(func)

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> otel_trace.Span:
            ci = capture_input if capture_input is not None else get_settings().capture_input
            if ci:
                attrs = dict(static)
                attrs[INPUT_ATTR] = _io_text("input", capture(args, kwargs))
                return get_tracer().start_span(span_name, attributes=attrs)
            return get_tracer().start_span(span_name, attributes=static)

        def want_output() -> bool:
            return capture_output if capture_output is not None else get_settings().capture_output

        if inspect.isasyncgenfunction(func):
            @functools.wraps(func)
            def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
                return _traced_agen(func, args, kwargs, start, want_output())
            return agen_wrapper

        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                return _traced_gen(func, args, kwargs, start, want_output())
            return gen_wrapper

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                span = start(args, kwargs)
                token = otel_context.attach(otel_trace.set_span_in_context(span))
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    _record_error(span, exc)
                    raise
                else:
                    if want_output() and span.is_recording():
                        _set_io(span, "output", result)
                    return result
                finally:
                    otel_context.detach(token)
                    span.end()
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = start(args, kwargs)
            token = otel_context.attach(otel_trace.set_span_in_context(span))
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                _record_error(span, exc)
                raise
            else:
                if want_output() and span.is_recording():
                    _set_io(span, "output", result)
                return result
            finally:
                otel_context.detach(token)
                span.end()
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def _traced_gen(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                start: Callable[..., otel_trace.Span], capture: bool) -> Generator[Any, Any, Any]:
    """Drive the generator with its span current while it runs (never while the caller runs).

    The span starts at the first `next()` and ends when the generator finishes, fails or is closed.
    """
    span = start(args, kwargs)
    ctx = otel_trace.set_span_in_context(span)
    token = otel_context.attach(ctx)
    try:
        gen = func(*args, **kwargs)
    except BaseException as exc:
        _record_error(span, exc)
        span.end()
        raise
    finally:
        otel_context.detach(token)
    items: list[Any] = []
    count = 0
    send_value: Any = None
    throw: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = gen.throw(throw) if throw is not None else gen.send(send_value)
            except StopIteration as stop:
                if capture and span.is_recording():
                    _set_io(span, "output", stop.value if stop.value is not None else items)
                span.set_attribute("tracekit.yielded", count)
                return stop.value
            finally:
                otel_context.detach(token)
            count += 1
            if capture and len(items) < MAX_YIELDED_ITEMS:
                items.append(item)
            throw = None
            try:
                send_value = yield item
            except GeneratorExit:
                token = otel_context.attach(ctx)
                try:
                    gen.close()
                finally:
                    otel_context.detach(token)
                span.set_attribute("tracekit.yielded", count)
                span.set_attribute("tracekit.closed_early", True)
                if capture and span.is_recording():
                    _set_io(span, "output", items)
                raise
            except BaseException as exc:  # thrown in by the caller: pass it on to the generator
                throw = exc
    except GeneratorExit:
        raise
    except BaseException as exc:
        _record_error(span, exc)
        raise
    finally:
        span.end()


async def _traced_agen(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                       start: Callable[..., otel_trace.Span], capture: bool) -> AsyncGenerator[Any, Any]:
    span = start(args, kwargs)
    ctx = otel_trace.set_span_in_context(span)
    try:
        agen = func(*args, **kwargs)
    except BaseException as exc:
        _record_error(span, exc)
        span.end()
        raise
    items: list[Any] = []
    count = 0
    send_value: Any = None
    throw: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = await (agen.athrow(throw) if throw is not None else agen.asend(send_value))
            except StopAsyncIteration:
                if capture and span.is_recording():
                    _set_io(span, "output", items)
                span.set_attribute("tracekit.yielded", count)
                return
            finally:
                otel_context.detach(token)
            count += 1
            if capture and len(items) < MAX_YIELDED_ITEMS:
                items.append(item)
            throw = None
            try:
                send_value = yield item
            except GeneratorExit:
                token = otel_context.attach(ctx)
                try:
                    await agen.aclose()
                finally:
                    otel_context.detach(token)
                span.set_attribute("tracekit.yielded", count)
                span.set_attribute("tracekit.closed_early", True)
                if capture and span.is_recording():
                    _set_io(span, "output", items)
                raise
            except BaseException as exc:
                throw = exc
    except GeneratorExit:
        raise
    except BaseException as exc:
        _record_error(span, exc)
        raise
    finally:
        span.end()


class SpanHandle:
    """What `with tracekit.span(...) as s` gives: setters for input, output and attributes."""

    __slots__ = ("span",)

    def __init__(self, span: otel_trace.Span) -> None:
        self.span = span

    def set_input(self, value: Any) -> None:
        _set_io(self.span, "input", value)

    def set_output(self, value: Any) -> None:
        _set_io(self.span, "output", value)

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, _attr_value(value))

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)

    def add_event(self, name: str, **attributes: Any) -> None:
        self.span.add_event(name, {k: _attr_value(v) for k, v in attributes.items()})

    def set_error(self, message: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, message))

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.span.get_span_context().span_id, "016x")


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        if len({type(v) for v in value}) <= 1:
            return list(value)
    return dumps_capped(value, get_settings().max_field_chars)


class span:
    """`with tracekit.span(name, kind="chain", **attributes) as s:` (also `async with`)."""

    __slots__ = ("name", "kind", "attributes", "_span", "_token")

    def __init__(self, name: str, kind: str = "span", **attributes: Any) -> None:
        self.name = name
        self.kind = _check_kind(kind)
        self.attributes = attributes
        self._span: otel_trace.Span | None = None
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> SpanHandle:
        attrs = _kind_attrs(self.kind)
        attrs.update({k: _attr_value(v) for k, v in self.attributes.items()})
        sp = get_tracer().start_span(self.name, attributes=attrs)
        self._span = sp
        self._token = otel_context.attach(otel_trace.set_span_in_context(sp))
        return SpanHandle(sp)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        sp = self._span
        assert sp is not None
        try:
            if exc is not None:
                _record_error(sp, exc)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            sp.end()

    async def __aenter__(self) -> SpanHandle:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def log_metric(name: str, value: float, step: int | None = None, **attributes: Any) -> None:
    """Record one point of a time series (loss, reward) on the current span; see the `metrics` view.

    Outside any span the point gets a span of its own named `metric`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r}: value must be a number, got {value!r}") from None
    attrs: dict[str, Any] = {"name": name}
    if math.isfinite(v):
        attrs["value"] = v
    else:
        attrs["nonfinite"] = str(v)  # NaN / inf: kept visible, value stays NULL in SQL
    if step is not None:
        attrs["step"] = int(step)
    for k, val in attributes.items():
        attrs[k] = _attr_value(val)
    current = otel_trace.get_current_span()
    if current.is_recording():
        current.add_event(METRIC_EVENT, attrs)
        return
    with span("metric") as s:
        s.span.add_event(METRIC_EVENT, attrs)


def current_trace_id() -> str | None:
    ctx = otel_trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
