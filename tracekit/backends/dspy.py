"""DSPy on tracekit: a program whose every call is a traced case, and a GEPA feedback metric whose
feedback text is that case's trace.

    import dspy
    from tracekit.backends.dspy import feedback_metric, traced

    program = traced(MyAgent())                              # each call: one case, under its own trace
    metric = feedback_metric(lambda gold, pred: float(pred.answer == gold.answer))
    optimized = dspy.GEPA(metric=metric, auto="light", reflection_lm=lm).compile(program, trainset=train)

DSPy's GEPA asks its metric for a score and "feedback" text to reflect on. Written by hand, that
text is a guess from the final answer; here it is what happened in the case, read back from the
store with SQL (`Experiments.case_digest`: the input and output, the error and its stack trace,
the tool calls with their arguments and results or errors, the LLM calls tracekit recorded), cut
to the per-case budget of the built-in proposer's trajectories section.

`traced` runs the program under a root span of kind `eval` (the shape the eval harness gives a
case, so the same digest reads it) and stamps the prediction with the trace id; spans the program
makes inside (tracekit's `@trace` tools, the anthropic instrumentation) land under it. `dspy` is
imported when `traced` or the metric is first used (the `dspy` extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._errors import OptimizerError
from ._experiments import case_digest

TRACE_ATTR = "_tracekit_trace_id"  # set on each prediction `traced` returns (a private attribute: DSPy ignores it)


def _dspy() -> Any:
    try:
        import dspy
    except ImportError:
        raise OptimizerError("tracekit.backends.dspy needs the dspy package: pip install 'tracekit-loop[dspy]'") from None
    return dspy


def traced(program: Any, *, name: str | None = None, split: str = "train") -> Any:
    """`program` (a dspy.Module) wrapped so each call is a case under its own trace; see the module doc."""
    dspy = _dspy()
    from .._config import get_tracer
    from .._decorators import _kind_attrs, _set_io
    from ..evals._sample import SPLITS, content_id

    if split not in SPLITS:
        raise OptimizerError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    task = name or type(program).__name__
    module: Any = dspy.Module

    class Traced(module):  # type: ignore[misc]  # dspy ships no annotations: its Module is Any to mypy
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs: Any) -> Any:
            attrs = {**_kind_attrs("eval"), "tracekit.eval.task": task, "tracekit.eval.split": split,
                     "tracekit.eval.case_id": content_id({k: str(v) for k, v in kwargs.items()}, None)}
            root = get_tracer().start_span(f"eval/{task}", context=otel_trace.set_span_in_context(otel_trace.INVALID_SPAN),
                                           attributes=attrs)
            _set_io(root, "input", {k: str(v) for k, v in kwargs.items()})
            try:
                with otel_trace.use_span(root, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    pred = self.inner(**kwargs)
            except Exception as exc:
                root.record_exception(exc)
                root.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                root.set_attributes({"tracekit.eval.status": "error", "tracekit.eval.passed": False,
                                     "tracekit.eval.explanation": f"{type(exc).__name__}: {exc}"[:4000]})
                root.end()
                raise
            _set_io(root, "output", {k: str(v) for k, v in dict(pred).items()} if hasattr(pred, "keys") else str(pred))
            root.set_attributes({"tracekit.eval.status": "ok", "tracekit.eval.passed": False})  # the metric decides
            root.end()
            try:
                setattr(pred, TRACE_ATTR, format(root.get_span_context().trace_id, "032x"))
            except (AttributeError, TypeError):
                pass  # a prediction that takes no attributes: the metric says the trace is unknown
            return pred

    return Traced(program)


def feedback_metric(score: Callable[[Any, Any], Any], *, home: str | Path | None = None,
                    budget: int | None = None) -> Callable[..., Any]:
    """A metric for `dspy.GEPA`: `score(gold, pred)` gives a number (or (number, explanation)); the
    feedback is the explanation plus the digest of the case's trace (`pred` from a `traced` program)."""

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None) -> Any:
        from .._config import flush

        value = score(gold, pred)
        why = ""
        if isinstance(value, tuple):
            value, why = value[0], str(value[1])
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OptimizerError(f"the score function returned {value!r}; it must return a finite number")
        tid = getattr(pred, TRACE_ATTR, None)
        if tid is None:
            evidence = "(no trace: wrap the program with tracekit.backends.dspy.traced to give feedback from its trace)"
        else:
            flush()
            evidence = case_digest(str(tid), home, budget) or f"(trace {str(tid)[:40]!r} holds no train case)"
        head = f"score {float(value):.4g}" + (f": {why}" if why else "")
        return _dspy().Prediction(score=float(value), feedback=f"{head}\n{evidence}")

    return metric
