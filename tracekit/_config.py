"""Configuration: one OpenTelemetry TracerProvider per process feeding the local store (or OTLP).

`configure()` is optional: the first span configures from the environment (`TRACEKIT_HOME`,
`TRACEKIT_PROJECT`, `TRACEKIT_SERVICE_NAME`, `TRACEKIT_EXPERIMENT_ID`, `OTEL_EXPORTER_OTLP_ENDPOINT`).
Calling it again switches the destination (home, endpoint) for spans that end afterwards; spans of
any other OpenTelemetry instrumentation in the process go to the same place, because tracekit's
provider is the global one (or, when the application already installed an SDK provider, tracekit
adds its processor to that one).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ._errors import ConfigError
from .store._rows import EXPERIMENT_ATTR, PROJECT_ATTR

if TYPE_CHECKING:
    from .store._store import Store

Redactor = Callable[[str, Any], Any]
"""`redact(field, value) -> value`, field is "input" or "output"; runs before JSON encoding."""


@dataclass(frozen=True)
class Settings:
    home: Path
    project: str = "default"
    service_name: str = "tracekit"
    otlp_endpoint: str | None = None
    capture_input: bool = True
    capture_output: bool = True
    max_field_chars: int = 65536
    scrub: bool = True
    redact: Redactor | None = None
    experiment_id: str | None = None
    propagate_threads: bool = True
    batch_delay_ms: int = 500
    max_queue_size: int = 200_000
    extra: dict[str, Any] = field(default_factory=dict)


def _env_settings() -> Settings:
    from .store._store import default_home

    return Settings(
        home=default_home(),
        project=os.environ.get("TRACEKIT_PROJECT") or "default",
        service_name=os.environ.get("TRACEKIT_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME") or "tracekit",
        otlp_endpoint=os.environ.get("TRACEKIT_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        experiment_id=os.environ.get("TRACEKIT_EXPERIMENT_ID") or None,
        capture_input=os.environ.get("TRACEKIT_CAPTURE_INPUT", "1") not in ("0", "false", "no"),
        capture_output=os.environ.get("TRACEKIT_CAPTURE_OUTPUT", "1") not in ("0", "false", "no"),
    )


class _TracekitProcessor(SpanProcessor):
    """Stamps project / experiment on every span at start; hands finished spans to the current pipeline."""

    def __init__(self) -> None:
        self.inner: SpanProcessor | None = None
        self.settings: Settings | None = None
        self._swap = threading.Lock()  # an on_end never hands a span to a pipeline swap() shut down

    def swap(self, inner: SpanProcessor, settings: Settings) -> None:
        """Send spans that end from now on to `inner`; the old pipeline is flushed and shut down."""
        with self._swap:
            old = self.inner
            self.settings = settings
            self.inner = inner
        if old is not None:
            old.shutdown()  # flushes what it holds to the old destination

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        s = self.settings
        if s is None:
            return
        attrs = span.attributes or {}
        if s.project != _resource_project and PROJECT_ATTR not in attrs:
            span.set_attribute(PROJECT_ATTR, s.project)  # the resource already says the first project
        exp = _experiment.get() or s.experiment_id
        if exp and EXPERIMENT_ATTR not in attrs:
            span.set_attribute(EXPERIMENT_ATTR, exp)

    def on_end(self, span: ReadableSpan) -> None:
        with self._swap:
            inner = self.inner
            if inner is not None:
                inner.on_end(span)

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.inner is not None else True


import contextvars  # noqa: E402

_experiment: contextvars.ContextVar[str | None] = contextvars.ContextVar("tracekit_experiment", default=None)

_lock = threading.RLock()
_resource_project: str | None = None
_settings: Settings | None = None
_processor = _TracekitProcessor()
_provider: otel_trace.TracerProvider | None = None  # the SDK's, ours or the one that won the race to be global
_tracer: otel_trace.Tracer | None = None
_exporter: SpanExporter | None = None
_atexit_registered = False


def configure(
    project: str | None = None,
    home: str | os.PathLike[str] | None = None,
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    max_field_chars: int | None = None,
    scrub: bool | None = None,
    redact: Redactor | None = None,
    experiment_id: str | None = None,
    propagate_threads: bool | None = None,
    exporter: SpanExporter | None = None,
) -> Settings:
    """Set where spans go and what they capture; returns the settings in force.

    Unset arguments keep their environment defaults. `exporter` replaces the destination with any
    OpenTelemetry `SpanExporter` (tests use an in-memory one).
    """
    global _settings
    base = _env_settings()
    changes: dict[str, Any] = {}
    for key, value in {
        "project": project,
        "service_name": service_name,
        "otlp_endpoint": otlp_endpoint,
        "capture_input": capture_input,
        "capture_output": capture_output,
        "max_field_chars": max_field_chars,
        "scrub": scrub,
        "redact": redact,
        "experiment_id": experiment_id,
        "propagate_threads": propagate_threads,
    }.items():
        if value is not None:
            changes[key] = value
    if home is not None:
        changes["home"] = Path(home)
    settings = replace(base, **changes)
    if settings.max_field_chars < 64:
        raise ConfigError(f"max_field_chars={settings.max_field_chars} is too small; use at least 64 (default 65536)")
    if settings.redact is not None and not callable(settings.redact):
        raise ConfigError("redact must be a callable redact(field, value) -> value")
    with _lock:
        _install(settings, exporter)
        _settings = settings
    return settings


def _install(settings: Settings, exporter: SpanExporter | None) -> None:
    global _provider, _tracer, _exporter, _atexit_registered, _resource_project
    if exporter is None:
        if settings.otlp_endpoint:
            exporter = _otlp_exporter(settings.otlp_endpoint)
        else:
            from ._exporter import ParquetSpanExporter
            from .store._store import Store

            exporter = ParquetSpanExporter(Store(settings.home), default_project=settings.project)
    new_inner = BatchSpanProcessor(
        exporter,
        max_queue_size=settings.max_queue_size,
        max_export_batch_size=4096,
        schedule_delay_millis=settings.batch_delay_ms,
    )
    _processor.swap(new_inner, settings)
    _exporter = exporter
    if _provider is None:
        current = otel_trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            current.add_span_processor(_processor)  # the application already set up OTel: join it
            _provider = current
        else:
            resource = Resource.create({"service.name": settings.service_name, PROJECT_ATTR: settings.project})
            limits = SpanLimits(max_events=100_000, max_attributes=1024, max_event_attributes=256)
            _provider = TracerProvider(resource=resource, span_limits=limits)
            _resource_project = settings.project
            _provider.add_span_processor(_processor)
            otel_trace.set_tracer_provider(_provider)
            if otel_trace.get_tracer_provider() is not _provider:  # someone else won the race
                _provider = otel_trace.get_tracer_provider()
                if isinstance(_provider, TracerProvider):
                    _provider.add_span_processor(_processor)
        _tracer = otel_trace.get_tracer("tracekit")
        _adopt_env_traceparent()
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    if settings.propagate_threads:
        _instrument_threading()


def _adopt_env_traceparent() -> None:
    """A process started with TRACEPARENT (the sandbox sets it) parents its root spans there."""
    tp = os.environ.get("TRACEPARENT")
    if not tp:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": tp, "tracestate": os.environ.get("TRACESTATE", "")}
    ctx = TraceContextTextMapPropagator().extract(carrier)
    if otel_trace.get_current_span(ctx).get_span_context().is_valid:
        otel_context.attach(ctx)


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


_threading_done = False


def _instrument_threading() -> None:
    global _threading_done
    if _threading_done:
        return
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    inst = ThreadingInstrumentor()
    if not inst.is_instrumented_by_opentelemetry:
        inst.instrument()
    _threading_done = True


def get_settings() -> Settings:
    """The settings in force, configuring from the environment on first use."""
    s = _settings
    if s is None:
        with _lock:
            if _settings is None:
                configure()
            s = _settings
    assert s is not None
    return s


def get_tracer() -> otel_trace.Tracer:
    t = _tracer
    if t is None:
        get_settings()
        t = _tracer
    assert t is not None
    return t


def store() -> "Store":
    from .store._store import Store

    return Store(get_settings().home)


def flush(timeout_ms: int = 30000) -> bool:
    """Write every finished span now; returns False if the timeout passed first."""
    if _settings is None:
        return True
    return _processor.force_flush(timeout_ms)


def shutdown() -> None:
    """Flush and stop the export pipeline (runs at interpreter exit)."""
    try:
        _processor.force_flush(30000)
    except Exception:
        pass


class experiment:
    """`with tracekit.experiment("exp-7"):` tags spans started inside with that experiment_id."""

    def __init__(self, experiment_id: str | None) -> None:
        self.experiment_id = experiment_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> "experiment":
        self._token = _experiment.set(self.experiment_id)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _experiment.reset(self._token)
