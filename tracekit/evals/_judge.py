"""The LLM judge: a model grades each output against a rubric, through the `anthropic` SDK.

    judge = scorers.llm_judge(
        "Correct if the answer names Paris; the reasoning does not matter.",
        model="claude-sonnet-4-5",          # or TRACEKIT_JUDGE_MODEL
        partial_credit=True,                # allow GRADE: P (0.5)
    )

The judge sees the case's input, the output, the target (as the reference answer, when there is
one) and the rubric, and ends its reply with `GRADE: C` (correct, 1.0), `GRADE: P` (partial, 0.5)
or `GRADE: I` (incorrect, 0.0). Its reasoning becomes the score's explanation. Each judge call is
traced: the judge's client is instrumented (`tracekit.instrument_anthropic(client)`), so below the
case's `score/<name>` span there is an `llm` span with the model, prompt, reply, tokens and cost
(a row of `llm_calls`). A reply without a grade is a scorer error (the case is recorded with it),
never a silent 0.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace

from .._errors import EvalError
from ._score import Score, output_text

if TYPE_CHECKING:
    from ._sample import Sample

DEFAULT_JUDGE_MODEL = "claude-sonnet-4-5"
GRADE_VALUES = {"C": 1.0, "P": 0.5, "I": 0.0}
_GRADE = re.compile(r"GRADE\s*:\s*\**\s*([CPI])\b", re.IGNORECASE)

PROMPT = """You are grading the answer an AI system gave to a task, against a rubric.

<task>
{input}
</task>

<answer>
{output}
</answer>
{reference}
<rubric>
{rubric}
</rubric>

Reason briefly about whether the answer satisfies the rubric. Then end your reply with exactly one
line: {choices}"""


def _text(value: Any) -> str:
    return output_text(value)


def parse_grade(reply: str, partial_credit: bool) -> tuple[str, str]:
    """The last GRADE letter in the reply and the reasoning before it; raises EvalError if none."""
    matches = list(_GRADE.finditer(reply))
    if not matches:
        raise EvalError(f"llm_judge: the judge's reply has no 'GRADE: C|I' line: {reply[-300:]!r}")
    letter = matches[-1].group(1).upper()
    if letter == "P" and not partial_credit:
        letter = "I"
    return letter, reply[: matches[-1].start()].strip()


def llm_judge(
    rubric: str,
    *,
    model: str | None = None,
    client: Any = None,
    partial_credit: bool = False,
    threshold: float = 1.0,
    max_tokens: int = 1024,
    temperature: float | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    prompt: str = PROMPT,
    name: str = "llm_judge",
) -> Callable[[Any, "Sample"], Any]:
    """A scorer asking a Claude model to grade the output against `rubric`.

    `client` is an `anthropic.Anthropic` or `AsyncAnthropic`; by default one is made from
    `base_url` / `api_key` or the environment (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL). `passed`
    is `value >= threshold`.
    """
    if not isinstance(rubric, str) or not rubric.strip():
        raise EvalError("llm_judge(rubric): the rubric must be a non-empty string saying what a correct answer is")
    judge_model = model or os.environ.get("TRACEKIT_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
    state: dict[str, Any] = {"client": client}

    def get_client() -> Any:
        if state["client"] is None:
            try:
                import anthropic
            except ImportError:
                raise EvalError("llm_judge needs the anthropic SDK: pip install 'tracekit-loop[anthropic]'") from None
            kwargs: dict[str, Any] = {}
            if base_url:
                kwargs["base_url"] = base_url
            if api_key:
                kwargs["api_key"] = api_key
            state["client"] = anthropic.Anthropic(**kwargs)
        if not state.get("traced"):
            from ..llm.anthropic._instrument import instrument_anthropic, is_instrumented

            if not is_instrumented(state["client"]):
                instrument_anthropic(state["client"])  # the judge's calls are llm spans (llm_calls view)
            state["traced"] = True
        return state["client"]

    async def score(output: Any, sample: "Sample") -> Score:
        reference = f"\n<reference_answer>\n{_text(sample.target)}\n</reference_answer>\n" if sample.target is not None else ""
        choices = ("'GRADE: C' (correct), 'GRADE: P' (partially correct) or 'GRADE: I' (incorrect)." if partial_credit
                   else "'GRADE: C' (correct) or 'GRADE: I' (incorrect).")
        text = prompt.format(input=_text(sample.input), output=_text(output), reference=reference,
                             rubric=rubric.strip(), choices=choices)
        messages = [{"role": "user", "content": text}]
        params: dict[str, Any] = {"model": judge_model, "max_tokens": max_tokens, "messages": messages}
        if temperature is not None:
            params["temperature"] = temperature
        c = get_client()
        if asyncio.iscoroutinefunction(getattr(c.messages, "create", None)):
            message = await c.messages.create(**params)
        else:
            message = await asyncio.to_thread(c.messages.create, **params)
        reply = _text(message)
        current = otel_trace.get_current_span()  # the runner's score/<name> span
        if current.is_recording():
            current.set_attribute("tracekit.judge.model", judge_model)
            current.set_attribute("tracekit.judge.reply", reply[:4000])
        letter, reasoning = parse_grade(reply, partial_credit)
        value = GRADE_VALUES[letter]
        return Score(value, passed=value >= threshold, answer=letter, explanation=reasoning or f"GRADE: {letter}",
                     metadata={"grade": letter, "judge_model": judge_model})

    score.name = name  # type: ignore[attr-defined]  # a scorer is a plain function; name and rubric are attributes
    score.__name__ = name
    score.rubric = rubric  # type: ignore[attr-defined]  # shown by the reports next to the judge's scores
    return score

