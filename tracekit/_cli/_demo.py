"""A small deterministic tool-using agent, traced with the decorators; `tracekit demo` runs it.

No network, no API key: the "model" is a rule-based planner, so the trace has the shape of a real
agent run (agent -> llm -> tool calls, one failing tool, a retry) and the SQL answers are stable.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from .._decorators import log_metric, span, trace

_OPS: dict[type[ast.operator | ast.unaryop], Callable[..., float]] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}

FACTS = {"boiling point of water": "100 °C at sea level", "speed of light": "299792458 m/s"}


@trace(kind="tool")
def calculator(expression: str) -> float:
    """Evaluates + - * / ** on numbers (no names, no calls)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](ev(node.left), ev(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](ev(node.operand)))
        raise ValueError(f"unsupported expression: {ast.dump(node)[:60]}")

    return ev(ast.parse(expression, mode="eval"))


@trace(kind="tool")
def lookup(topic: str) -> str:
    if topic not in FACTS:
        raise KeyError(f"no fact about {topic!r}")
    return FACTS[topic]


@trace(kind="llm", name="plan")
def plan(question: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A stand-in for a model call: decides the next tool call from the question and history."""
    if not history:
        if "light" in question:
            return {"tool": "lookup", "args": {"topic": "light speed"}}
        return {"tool": "calculator", "args": {"expression": question.split(":", 1)[-1].strip()}}
    last = history[-1]
    if last.get("error") and last["tool"] == "lookup":
        return {"tool": "lookup", "args": {"topic": "speed of light"}}
    return {"final": f"The answer is {last['result']}."}


@trace(kind="agent")
def answer(question: str, max_turns: int = 4) -> str:
    history: list[dict[str, Any]] = []
    tools: dict[str, Callable[..., object]] = {"calculator": calculator, "lookup": lookup}
    for turn in range(max_turns):
        step = plan(question, history)
        if "final" in step:
            log_metric("turns", turn + 1)
            return str(step["final"])
        with span("act", kind="chain", turn=turn) as s:
            s.set_input(step)
            try:
                result = tools[step["tool"]](**step["args"])
                history.append({"tool": step["tool"], "result": result})
            except Exception as exc:  # the agent sees the error and retries
                history.append({"tool": step["tool"], "error": str(exc)})
            s.set_output(history[-1])
    return "I could not answer."


QUESTIONS = ["compute: 6 * 7", "compute: (2 + 3) ** 2 / 5", "what is the speed of light?"]

SQL_ANSWERS = [
    ("Traces (one row per agent run)",
     "SELECT name, round(duration_ms, 2) AS ms, span_count, error_count, input FROM traces ORDER BY start_time"),
    ("Spans by kind", "SELECT kind, count(*) AS spans, round(avg(duration_ms), 3) AS avg_ms FROM spans GROUP BY kind ORDER BY spans DESC"),
    ("Failed tool calls and why",
     "SELECT name, status_message, input FROM spans WHERE kind = 'tool' AND status = 'error'"),
    ("Turns per run (metrics view)", "SELECT m.value AS turns, t.input FROM metrics m JOIN traces t USING (trace_id) WHERE m.name = 'turns'"),
]
