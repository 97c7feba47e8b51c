"""tracekit: traces of agent runs in Parquet, SQL through DuckDB, a sandbox, evals and a trace-fed optimizer.

    import tracekit

    @tracekit.trace(kind="agent")
    def answer(question: str) -> str: ...

    answer("What is 2+2?")
    tracekit.query("SELECT name, duration_ms FROM spans").pl()

The parts, each a layer that imports only the ones below it (docs/design/architecture.md):

    tracekit._cli          the `tracekit` command
    tracekit.optimizer     the loop: propose, validate, run in the sandbox, keep or discard, record
    tracekit.evals         datasets, solvers, scorers, per-case results
    tracekit.sandbox       one isolated, budgeted run of a command   (beside it: tracekit.collector,
                           the OTLP/HTTP server and SQL over HTTP)
    tracekit.trajectories  what an agent did, step by step; ATIF import and export
    tracekit.llm           LLM SDK calls as spans (anthropic)
    tracekit (this file, _decorators, _config, _exporter, _query)   the span path and query()
    tracekit.store         Parquet tables, their schema, span rows, OTLP decoding, DuckDB views

Importing tracekit is light: DuckDB, PyArrow and FastAPI load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import Settings, configure, experiment, flush, get_settings, shutdown
from ._decorators import SpanHandle, current_trace_id, log_metric, span, trace
from ._errors import (
    CollectorError,
    ConfigError,
    EvalError,
    OptimizerError,
    QueryError,
    SandboxError,
    StoreError,
    TracekitError,
    TrajectoryError,
)

__version__ = "0.1.0"

# Names loaded on first use (they import duckdb / pyarrow / anthropic): name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "query": ("tracekit._query", "query"),
    "annotate": ("tracekit._query", "annotate"),
    "Store": ("tracekit.store", "Store"),
    "set_model_prices": ("tracekit.store", "set_model_prices"),
    "instrument_anthropic": ("tracekit.llm", "instrument_anthropic"),
    "uninstrument_anthropic": ("tracekit.llm", "uninstrument_anthropic"),
    "trajectory": ("tracekit.trajectories", "trajectory"),
    "Trajectory": ("tracekit.trajectories", "Trajectory"),
    "export_atif": ("tracekit.trajectories", "export_atif"),
    "import_atif": ("tracekit.trajectories", "import_atif"),
}

if TYPE_CHECKING:
    from ._query import annotate as annotate
    from ._query import query as query
    from .llm import instrument_anthropic as instrument_anthropic
    from .llm import uninstrument_anthropic as uninstrument_anthropic
    from .store import Store as Store
    from .store import set_model_prices as set_model_prices
    from .trajectories import Trajectory as Trajectory
    from .trajectories import export_atif as export_atif
    from .trajectories import import_atif as import_atif
    from .trajectories import trajectory as trajectory


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'tracekit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CollectorError",
    "ConfigError",
    "EvalError",
    "OptimizerError",
    "QueryError",
    "SandboxError",
    "Settings",
    "SpanHandle",
    "Store",
    "StoreError",
    "TracekitError",
    "Trajectory",
    "TrajectoryError",
    "annotate",
    "configure",
    "current_trace_id",
    "experiment",
    "export_atif",
    "flush",
    "get_settings",
    "import_atif",
    "instrument_anthropic",
    "log_metric",
    "query",
    "set_model_prices",
    "shutdown",
    "span",
    "trace",
    "trajectory",
    "uninstrument_anthropic",
]
