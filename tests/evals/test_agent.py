"""Evals of a decorated tool-using agent and the LLM judge, both against the local Messages API server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anthropic
import pytest

import tracekit
from tracekit.evals import Sample, Task, run_eval, scorers

from tests._support import DOCS
from tests._support.messages_server import MessagesServer, error, reply, text, tool_use

AGENT_MODEL = "claude-agent-test"
JUDGE_MODEL = "claude-judge-test"


def _last_user_content(body: dict[str, Any]) -> Any:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def _respond(body: dict[str, Any]) -> Any:
    """A scripted model: the agent asks for the calculator, then answers; the judge compares answers."""
    if body["model"] == JUDGE_MODEL:
        prompt = _last_user_content(body)
        answer = re.search(r"<answer>\n(.*?)\n</answer>", prompt, re.S).group(1)  # type: ignore[union-attr]
        ref = re.search(r"<reference_answer>\n(.*?)\n</reference_answer>", prompt, re.S)
        if "NO-GRADE" in answer:
            return reply(text("I cannot decide."))
        if ref and ref.group(1) in answer:
            return reply(text(f"The answer states {ref.group(1)}, matching the reference.\nGRADE: C"))
        if "roughly" in answer:
            return reply(text("Close but imprecise.\nGRADE: P"))
        return reply(text("The answer does not match the reference.\nGRADE: I"))
    content = _last_user_content(body)
    if isinstance(content, str):
        expr = content.removeprefix("Compute: ")
        return reply(text("Let me use the calculator."), tool_use("calculator", {"expression": expr}))
    result = next(b for b in content if b["type"] == "tool_result")
    return reply(text(f"The result is {result['content']}."))


@tracekit.trace(kind="tool", name="calculator")
def calculator(expression: str) -> str:
    if "/ 0" in expression:
        raise ZeroDivisionError("division by zero")
    a, op, b = expression.split()
    return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])


def make_agent(client: anthropic.Anthropic, catch_tool_errors: bool = False) -> Any:
    @tracekit.trace(kind="agent", name="calc_agent")
    def agent(question: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"Compute: {question}"}]
        tools = [{"name": "calculator", "description": "Evaluate 'a op b'.",
                  "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}}}]
        for _ in range(4):
            msg = client.messages.create(model=AGENT_MODEL, max_tokens=256, messages=messages, tools=tools)
            if msg.stop_reason != "tool_use":
                return "".join(b.text for b in msg.content if b.type == "text")
            messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
            results = []
            for b in (b for b in msg.content if b.type == "tool_use"):
                try:
                    results.append({"type": "tool_result", "tool_use_id": b.id, "content": calculator(**b.input)})
                except ZeroDivisionError as exc:
                    if not catch_tool_errors:
                        raise
                    results.append({"type": "tool_result", "tool_use_id": b.id, "content": f"error: {exc}", "is_error": True})
            messages.append({"role": "user", "content": results})
        raise RuntimeError("too many turns")

    return agent


def test_decorated_agent_against_the_messages_server(home: Path, messages_server: MessagesServer) -> None:
    messages_server.responder = _respond
    client = anthropic.Anthropic(base_url=messages_server.url, api_key="test-key", max_retries=0)
    task = Task([Sample("2 + 3", "5", id="add"), Sample("7 * 6", "42", id="mul"), Sample("9 - 1", "7", id="off-by-one"),
                 Sample("1 / 0", "inf", id="divzero")],
                solver=make_agent(client), scorers=[scorers.includes()], name="calc_agent", concurrency=2)
    report = run_eval(task)
    rows = {r["case_id"]: r for r in report.rows}
    assert rows["add"]["passed"] and json.loads(rows["add"]["output"]) == "The result is 5."
    assert rows["mul"]["passed"]
    assert not rows["off-by-one"]["passed"] and rows["off-by-one"]["status"] == "ok"
    assert rows["divzero"]["status"] == "error" and rows["divzero"]["error"] == "ZeroDivisionError: division by zero"
    assert report.metrics["accuracy"] == 0.5
    assert len(messages_server.message_requests()) == 7  # two turns per answered case, one for the crash
    spans = tracekit.query(f"""
        SELECT s.name, s.kind, s.status, p.name AS parent
        FROM eval_results r JOIN spans s USING (trace_id) LEFT JOIN spans p ON p.span_id = s.parent_span_id
        WHERE r.run_id = '{report.run_id}' AND r.case_id = 'divzero' ORDER BY s.start_time""").fetchall()
    assert spans[0] == ("eval/calc_agent", "eval", "error", None)
    assert ("calc_agent", "agent", "error", "eval/calc_agent") in spans
    assert ("calculator", "tool", "error", "calc_agent") in spans
    # the SDK's own llm span (the anthropic SDK emits OpenTelemetry spans) nests under the agent
    assert [(k, p) for _, k, _, p in spans if k == "llm"] == [("llm", "calc_agent")]

def test_llm_judge_grades_with_the_rubric_and_is_traced(home: Path, messages_server: MessagesServer) -> None:
    messages_server.responder = _respond
    judge = scorers.llm_judge("Correct if the answer states the reference number.", model=JUDGE_MODEL,
                              base_url=messages_server.url, api_key="test-key", partial_credit=True)
    answers = {"a": "It is 12.", "b": "It is 13.", "c": "roughly a dozen", "d": "NO-GRADE"}
    task = Task([Sample(k, "12", id=k) for k in answers], solver=lambda k: answers[k], scorers=[judge], name="judged")
    report = run_eval(task)
    rows = {r["case_id"]: r for r in report.rows}
    assert rows["a"]["passed"] and rows["a"]["score"] == 1.0
    assert rows["a"]["explanation"] == "The answer states 12, matching the reference."
    assert json.loads(rows["a"]["scores"])["llm_judge"]["metadata"] == {"grade": "C", "judge_model": JUDGE_MODEL}
    assert not rows["b"]["passed"] and rows["b"]["score"] == 0.0
    assert rows["c"]["score"] == 0.5 and not rows["c"]["passed"]
    assert rows["d"]["status"] == "error" and "no 'GRADE: C|I' line" in rows["d"]["error"]
    judged = [r for r in messages_server.message_requests() if r.body and r.body["model"] == JUDGE_MODEL]
    assert len(judged) == 4
    prompt = judged[0].text
    assert "Correct if the answer states the reference number." in prompt and "<reference_answer>\n12\n" in prompt
    assert "GRADE: P" in prompt  # partial credit offered
    # the judge's call is in the case's trace, below the scorer's span, once in llm_calls
    calls = tracekit.query(f"""
        SELECT l.model, l.input_tokens > 0, l.output_messages LIKE '%GRADE: C%', p.name
        FROM llm_calls l JOIN spans p ON p.span_id = l.parent_span_id
        WHERE l.trace_id = '{rows['a']['trace_id']}'""").fetchall()
    assert calls == [(JUDGE_MODEL, True, True, "score/llm_judge")]

def test_llm_judge_transient_errors_are_retried(home: Path, messages_server: MessagesServer) -> None:
    messages_server.responder = _respond
    messages_server.enqueue(error(529), error(429))
    client = anthropic.Anthropic(base_url=messages_server.url, api_key="test-key", max_retries=0)
    judge = scorers.llm_judge("Correct if it says 12.", model=JUDGE_MODEL, client=client)
    task = Task([Sample("q", "12", id="only")], solver=lambda q: "12", scorers=[judge], retry_backoff_s=0.01)
    row = run_eval(task).rows[0]
    assert row["passed"] and row["attempts"] == 1  # the solver ran once; only the judge was retried
    events = tracekit.query(f"""
        SELECT json_extract_string(e.attributes, '$.what'), json_extract_string(e.attributes, '$.error')
        FROM spans, unnest(events) AS t(e)
        WHERE trace_id = '{row['trace_id']}' AND e.name = 'tracekit.eval.retry'""").fetchall()
    assert [w for w, _ in events] == ["scorer llm_judge", "scorer llm_judge"]
    assert sorted(e.split(":")[0] for _, e in events) == ["OverloadedError", "RateLimitError"]


def test_llm_judge_needs_a_rubric() -> None:
    with pytest.raises(tracekit.EvalError, match="rubric must be a non-empty string"):
        scorers.llm_judge("  ")


def _doc_queries() -> list[str]:
    doc = (DOCS / "evals.md").read_text()
    return re.findall(r"```sql\n(.*?)```", doc, re.S)


def test_docs_sql_recipes_run_on_a_real_eval(home: Path, messages_server: MessagesServer) -> None:
    messages_server.responder = _respond
    client = anthropic.Anthropic(base_url=messages_server.url, api_key="test-key", max_retries=0)
    tracekit.instrument_anthropic(client)
    judge = scorers.llm_judge("Correct if it states the reference number.", model=JUDGE_MODEL,
                              base_url=messages_server.url, api_key="test-key")
    cases = [Sample("2 + 3", "5", id="add"), Sample("7 * 6", "42", id="mul"), Sample("1 / 0", "0", id="divzero"),
             Sample("9 - 1", "8", id="held-out", split="val")]
    agent = make_agent(client, catch_tool_errors=True)
    before = run_eval(Task(cases, solver=agent, scorers=[scorers.includes(), judge], name="calc"), experiment_id="exp-a")
    assert before.metrics["accuracy"] == 0.75
    cases[0] = Sample("2 + 2", "5", id="add")  # the same case id now fails: a regression
    after = run_eval(Task(cases, solver=agent, scorers=[scorers.includes(), judge], name="calc"), experiment_id="exp-b")
    assert after.metrics["accuracy"] == 0.5

    queries = _doc_queries()
    assert len(queries) == 7
    results = [tracekit.query(q).fetchall() for q in queries]
    failing, per_case, tool_errors, per_tool, last_reply, regressions, per_experiment = results
    assert [(r[0], r[2]) for r in failing] == [("add", "ok"), ("divzero", "ok")]
    assert failing[0][3] == "none of ['5'] in 'The result is 4.'"
    counts = {r[0]: (r[2], r[3] > 0) for r in per_case}
    assert counts == {"add": (2, True), "mul": (2, True), "divzero": (2, True), "held-out": (2, True)}  # judge calls excluded
    assert [(r[0], r[1], json.loads(r[2]), r[3]) for r in tool_errors] == [
        ("divzero", "calculator", {"expression": "1 / 0"}, "ZeroDivisionError: division by zero")]
    assert ("calculator", False, 2, 0.5) in per_tool and ("calculator", True, 2, 0.0) in per_tool
    assert [r[0] for r in last_reply] == ["add", "divzero"] and last_reply[1][1] == "end_turn"
    assert "The result is error: division by zero." in last_reply[1][2]
    assert [(r[0], r[1]) for r in regressions] == [("add", 1)]
    assert [(r[0], r[3], r[4]) for r in per_experiment] == [("exp-a", 3, 0.667), ("exp-b", 3, 0.333)]
