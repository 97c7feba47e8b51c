"""Built-in scorers. Each call returns a scorer: a callable `(output, sample) -> Score`.

    from tracekit.evals import Task, scorers

    Task("qa", dataset, solver=agent, scorers=[
        scorers.exact(ignore_case=True),          # output == target (or any of a list of targets)
        scorers.includes(),                        # target appears in the output
        scorers.regex(r"ANSWER: (\\d+)"),          # pattern found (and group 1 == target, if a target)
        scorers.numeric(abs_tol=0.01),             # last number in the output vs the target number
        scorers.json_match(subset=True),           # JSON output matches the target object
        scorers.python(lambda output, target: output.startswith(target)),
        scorers.llm_judge("Correct if it names the capital city.", model="claude-sonnet-4-5"),
    ])

Outputs that are not strings are compared as text: an Anthropic `Message` by its text blocks,
anything else as JSON.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable
from typing import Any

from .._errors import EvalError
from .._util.jsonutil import JSONLimitError, loads_limited, raw_decode_limited
from ._judge import llm_judge
from ._sample import Sample
from ._score import Score, as_score, output_text

__all__ = ["exact", "includes", "json_match", "llm_judge", "numeric", "output_text", "python", "regex"]


def _targets(sample: Sample, scorer: str) -> list[str]:
    t = sample.target
    if t is None:
        raise EvalError(f"{scorer}: sample {sample.id!r} has no target")
    items = t if isinstance(t, (list, tuple)) else [t]
    return [x if isinstance(x, str) else output_text(x) for x in items]


def _named(fn: Callable[..., Any], name: str, inline: bool = True) -> Callable[..., Any]:
    fn.name = name  # type: ignore[attr-defined]  # a scorer is a plain function; its name is an attribute
    fn.__name__ = name
    fn.inline = inline  # type: ignore[attr-defined]  # cheap and pure: the harness calls it on its event loop
    return fn


def exact(*, ignore_case: bool = False, strip: bool = True, name: str = "exact") -> Callable[[Any, Sample], Score]:
    """1.0 when the output equals the target (any of them, for a list of targets)."""

    def norm(s: str) -> str:
        s = s.strip() if strip else s
        return s.casefold() if ignore_case else s

    def score(output: Any, sample: Sample) -> Score:
        text = output_text(output)
        targets = _targets(sample, name)
        hit = next((t for t in targets if norm(t) == norm(text)), None)
        return Score(hit is not None, answer=text,
                     explanation=f"output equals {hit!r}" if hit is not None else f"{_clip(text)!r} != {_clip(targets[0])!r}"
                     + (f" (and {len(targets) - 1} other targets)" if len(targets) > 1 else ""))

    return _named(score, name)


def includes(*, ignore_case: bool = True, name: str = "includes") -> Callable[[Any, Sample], Score]:
    """1.0 when the target (any of them) appears in the output."""

    def score(output: Any, sample: Sample) -> Score:
        text = output_text(output)
        hay = text.casefold() if ignore_case else text
        targets = _targets(sample, name)
        hit = next((t for t in targets if (t.casefold() if ignore_case else t) in hay), None)
        return Score(hit is not None,
                     explanation=f"found {hit!r}" if hit is not None else f"none of {[_clip(t, 40) for t in targets]} in {_clip(text)!r}")

    return _named(score, name)


def regex(pattern: str | None = None, *, flags: int = 0, group: int | str | None = None, ignore_case: bool = False,
          name: str = "regex") -> Callable[[Any, Sample], Score]:
    """Search the output for `pattern`.

    Without a target the search succeeding is the score. With a target, the captured group
    (`group`, default 1 when the pattern has groups, else the whole match) must equal it. Without
    `pattern` the target is the pattern.
    """
    fl = flags | (re.IGNORECASE if ignore_case else 0)
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern, fl)
        except re.error as exc:
            raise EvalError(f"regex({pattern!r}): invalid pattern ({exc})") from None

    def score(output: Any, sample: Sample) -> Score:
        text = output_text(output)
        if compiled is None:
            pats = _targets(sample, name)
            for p in pats:
                if re.search(p, text, fl):
                    return Score(True, explanation=f"matched /{p}/")
            return Score(False, explanation=f"no match for {pats} in {_clip(text)!r}")
        m = None
        for m in compiled.finditer(text):
            pass  # the last match counts: answers usually come at the end
        if m is None:
            return Score(False, explanation=f"/{compiled.pattern}/ not found in {_clip(text)!r}")
        g = group if group is not None else (1 if compiled.groups else 0)
        got = m.group(g)
        if sample.target is None:
            return Score(True, answer=got, explanation=f"matched {got!r}")
        targets = _targets(sample, name)
        ok = any((got or "").strip().casefold() == t.strip().casefold() if ignore_case else (got or "").strip() == t.strip()
                 for t in targets)
        return Score(ok, answer=got, explanation=f"extracted {got!r}, expected {targets[0]!r}")

    return _named(score, name)


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = output_text(value)
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric(*, abs_tol: float = 1e-6, rel_tol: float = 0.0, name: str = "numeric") -> Callable[[Any, Sample], Score]:
    """1.0 when the output's number (the last one in its text) is within tolerance of the target's.

    Passes when `|got - want| <= max(abs_tol, rel_tol * |want|)`.
    """
    if abs_tol < 0 or rel_tol < 0:
        raise EvalError(f"numeric(abs_tol={abs_tol}, rel_tol={rel_tol}): tolerances must be >= 0")

    def score(output: Any, sample: Sample) -> Score:
        want = _to_number(sample.target)
        if want is None:
            raise EvalError(f"{name}: target of sample {sample.id!r} is not a number: {sample.target!r}")
        got = _to_number(output)
        if got is None:
            return Score(False, explanation=f"no number in the output {_clip(output_text(output))!r}")
        err = abs(got - want)
        ok = err <= max(abs_tol, rel_tol * abs(want))
        return Score(ok, answer=repr(got), metadata={"got": got, "want": want, "error": err},
                     explanation=f"{got:g} vs {want:g} (|error| {err:.3g})")

    return _named(score, name)


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    try:
        return loads_limited(text)
    except JSONLimitError:
        raise
    except ValueError:
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        if start < 0:
            raise
        return raw_decode_limited(text[start:])


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def json_match(*, subset: bool = False, keys: list[str] | None = None, name: str = "json_match") -> Callable[[Any, Sample], Score]:
    """Parse the output as JSON (code fences and surrounding prose allowed) and compare to the target.

    Whole-value equality by default. With `subset=True` (or `keys`) only the target's keys (or
    those keys) are compared; the value is the fraction that match, passed when all do.
    """

    def score(output: Any, sample: Sample) -> Score:
        target = sample.target
        if isinstance(target, str):
            try:
                target = json.loads(target)
            except ValueError:
                raise EvalError(f"{name}: target of sample {sample.id!r} is not JSON: {target!r}") from None
        try:
            got = _parse_json(output)
        except ValueError as exc:
            return Score(False, explanation=f"output is not JSON ({exc}): {_clip(output_text(output))!r}")
        if not (subset or keys):
            ok = _equal(got, target)
            return Score(ok, explanation="JSON equal" if ok else f"{_clip(json.dumps(got, default=str))} != {_clip(json.dumps(target))}")
        if not isinstance(target, dict) or not isinstance(got, dict):
            return Score(False, explanation=f"expected a JSON object, got {type(got).__name__}")
        names = keys or list(target)
        wrong = [k for k in names if k not in got or not _equal(got[k], target.get(k))]
        frac = (len(names) - len(wrong)) / len(names) if names else 1.0
        return Score(frac, passed=not wrong, metadata={"mismatched": wrong},
                     explanation="all keys match" if not wrong else "mismatched keys: " + ", ".join(
                         f"{k} (got {_clip(json.dumps(got.get(k), default=str), 40)}, want {_clip(json.dumps(target.get(k)), 40)})"
                         for k in wrong))

    return _named(score, name)


_PARAMS = ("output", "target", "sample", "input", "metadata")


def python(fn: Callable[..., Any], *, name: str | None = None) -> Callable[[Any, Sample], Any]:
    """A scorer from a plain function; its parameters are filled by name.

    The first parameter gets the output; others named `target`, `sample`, `input` or `metadata`
    get those. It returns a Score, a bool or a number (sync or async).
    """
    if not callable(fn):
        raise EvalError(f"python(): {fn!r} is not callable")
    params = list(inspect.signature(fn).parameters)
    if not params:
        raise EvalError(f"python({getattr(fn, '__name__', fn)}): the function must take the output as its first parameter")
    unknown = [p for p in params[1:] if p not in _PARAMS]
    if unknown:
        raise EvalError(f"python({getattr(fn, '__name__', fn)}): unknown parameters {unknown}; use {', '.join(_PARAMS[1:])}")
    label = name or (fn.__name__ if getattr(fn, "__name__", "<lambda>") != "<lambda>" else "python")
    is_async = inspect.iscoroutinefunction(fn)

    def args(output: Any, sample: Sample) -> list[Any]:
        values = {"target": sample.target, "sample": sample, "input": sample.input, "metadata": sample.metadata}
        return [output] + [values[p] for p in params[1:]]

    if is_async:
        async def ascore(output: Any, sample: Sample) -> Score:
            return as_score(await fn(*args(output, sample)), label)
        return _named(ascore, label, inline=False)

    def score(output: Any, sample: Sample) -> Score:
        return as_score(fn(*args(output, sample)), label)

    return _named(score, label, inline=False)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
