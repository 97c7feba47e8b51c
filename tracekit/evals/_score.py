"""`Score` and the `Scorer` protocol: any callable `(output, sample) -> Score` (sync or async).

    def exact_length(output: str, sample: Sample) -> Score:
        ok = len(output) == sample.target
        return Score(1.0 if ok else 0.0, explanation=f"length {len(output)}")

A scorer may also return a bool or a number (turned into a Score). Its name (for result columns
and metrics) is its `name` attribute, else its function name.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import EvalError

if TYPE_CHECKING:
    from ._sample import Sample


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one output.

    `value` is a number (usually 0..1; a bool becomes 1.0 / 0.0). `passed` defaults to
    `value >= 1.0`; give it explicitly for partial-credit scores with a threshold.
    """

    value: float
    explanation: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None
    answer: str | None = None  # what the scorer extracted from the output, when it extracts

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, bool):
            object.__setattr__(self, "value", 1.0 if v else 0.0)
        elif isinstance(v, (int, float)):
            if not math.isfinite(float(v)):
                raise EvalError(f"score value must be finite, got {v!r}")
            object.__setattr__(self, "value", float(v))
        else:
            raise EvalError(f"score value must be a number or bool, got {type(v).__name__} {v!r}")
        if self.passed is None:
            object.__setattr__(self, "passed", self.value >= 1.0 - 1e-9)
        if not isinstance(self.metadata, dict):
            raise EvalError(f"score metadata must be a dict, got {type(self.metadata).__name__}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "passed": self.passed}
        if self.explanation is not None:
            out["explanation"] = self.explanation
        if self.answer is not None:
            out["answer"] = self.answer
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@runtime_checkable
class Scorer(Protocol):
    """What the harness calls for each output: `scorer(output, sample)` -> Score | bool | float.

    May be `async def`. Raise to signal the scorer itself failed (the case is then recorded as an
    error, not a wrong answer); raise `TransientError` for failures worth retrying.
    """

    def __call__(self, output: Any, sample: "Sample") -> "Score | bool | float | Awaitable[Score | bool | float]": ...


def scorer_name(scorer: Any) -> str:
    name = getattr(scorer, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(scorer, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return type(scorer).__name__ if not inspect.isfunction(scorer) else "scorer"


def as_score(result: Any, name: str) -> Score:
    """A scorer's return value as a Score (bool and numbers accepted)."""
    if isinstance(result, Score):
        return result
    if isinstance(result, (bool, int, float)):
        return Score(result)
    raise EvalError(f"scorer {name!r} returned {type(result).__name__} {result!r}; return a Score, a bool or a number")


def check_scorers(scorers: Any) -> list[Any]:
    """Validate a task's scorers: callables with unique names."""
    if scorers is None:
        raise EvalError("a task needs at least one scorer, e.g. scorers=[scorers.exact()]")
    items = list(scorers) if isinstance(scorers, (list, tuple)) else [scorers]
    if not items:
        raise EvalError("a task needs at least one scorer, e.g. scorers=[scorers.exact()]")
    names: set[str] = set()
    for s in items:
        if not callable(s):
            raise EvalError(f"scorer {s!r} is not callable; a scorer is a function (output, sample) -> Score")
        n = scorer_name(s)
        if n in names:
            raise EvalError(f"two scorers are named {n!r}; give one a different name (name=...)")
        names.add(n)
    return items


def output_text(output: Any) -> str:
    """The text of an output: a str as is, an Anthropic Message's text blocks, else JSON."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    content = getattr(output, "content", None)
    if isinstance(content, list) and content and all(hasattr(b, "type") for b in content):
        return "".join(getattr(b, "text", "") for b in content if getattr(b, "type", "") == "text")
    if isinstance(output, (int, float, bool)):
        return str(output)
    return json.dumps(output, ensure_ascii=False, default=str)
