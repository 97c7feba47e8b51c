"""DSPy (the real `dspy` package) on tracekit: a GEPA feedback metric whose feedback is the case's trace.

The program's LM is dspy.LM through litellm to the suite's local Messages API server: no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracekit.backends.dspy import feedback_metric, traced

from tests._support.backends import lookup
from tests._support.messages_server import MessagesServer

dspy = pytest.importorskip("dspy", reason="the dspy extra: pip install 'tracekit-loop[dspy]'")


class Capital(dspy.Module):  # type: ignore[misc]
    """Looks the capital up with a tool, falls back to the LM on a tool error (so the error never reaches the score)."""

    def __init__(self, table: str = "capitals") -> None:
        super().__init__()
        self.table = table
        self.answer = dspy.Predict("country, facts -> capital")

    def forward(self, country: str) -> Any:
        try:
            facts = lookup(self.table, country)
        except LookupError:
            facts = "unknown"
        return self.answer(country=country, facts=facts)


def _lm(server: MessagesServer) -> Any:
    server.responder = lambda body: "[[ ## capital ## ]]\nI do not know\n\n[[ ## completed ## ]]"
    return dspy.LM("anthropic/claude-test-1", api_base=server.url + "/v1", api_key="test-key", cache=False, num_retries=0)


def test_the_metrics_feedback_holds_the_tool_call_and_its_stack_trace_that_the_score_does_not(
        home: Path, messages_server: MessagesServer) -> None:
    program = traced(Capital(), name="capital")
    gold = dspy.Example(country="France", capital="Paris").with_inputs("country")
    with dspy.context(lm=_lm(messages_server)):
        pred = program(country="France")
    assert pred.capital == "I do not know"
    assert messages_server.requests and "France" in messages_server.requests[0].text  # the LM call was served locally
    metric = feedback_metric(lambda g, p: float(p.capital == g.capital))
    out = metric(gold, pred, None, "answer", None)
    assert out.score == 0.0
    fb = out.feedback
    assert "tool lookup(" in fb and '"table": "capitals"' in fb and "moved to 'capitals_v2'" in fb  # the tool call, its error
    assert "stack trace (span lookup)" in fb and "raise LookupError" in fb  # where it was raised
    assert "France" in fb and "I do not know" in fb  # the case's input and output


def test_a_failing_program_is_recorded_with_its_stack_and_a_prediction_without_a_trace_says_how_to_get_one(
        home: Path, messages_server: MessagesServer) -> None:
    class Broken(dspy.Module):  # type: ignore[misc]
        def forward(self, country: str) -> Any:
            return lookup("capitals", country)

    program = traced(Broken(), name="broken")
    with pytest.raises(LookupError):
        program(country="Peru")
    import tracekit
    from tracekit.store import Database

    tracekit.flush()
    stacks = Database(home).sql("SELECT count(*) FROM spans WHERE name = 'eval/broken' AND status = 'error'").fetchall()
    assert stacks == [(1,)]
    metric = feedback_metric(lambda g, p: (0.0, "wrong capital"))
    out = metric(dspy.Example(country="Peru", capital="Lima"), dspy.Prediction(capital="x"))
    assert out.score == 0.0 and "wrong capital" in out.feedback and "traced" in out.feedback
    forged = dspy.Prediction(capital="x")
    forged._tracekit_trace_id = "' OR 1=1 --"  # a program may set anything there: it is never SQL
    assert "no train case" in metric(None, forged).feedback
    with pytest.raises(Exception, match="finite number"):
        feedback_metric(lambda g, p: float("nan"))(None, dspy.Prediction(capital="x"))
