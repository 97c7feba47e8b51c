"""The bundled example agent (examples/agent) against the local Messages API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

import tracekit

from tests._support import EXAMPLES, ROOT
from tests._support.anthropic_api import client, rows
from tests._support.examples import load
from tests._support.messages_server import MessagesServer, reply, text, tool_use

AGENT_DIR = EXAMPLES / "agent"
harness = load("agent", "harness")  # first, so that agent.py's `import harness` is this module
example = load("agent", "agent")


@pytest.fixture
def agent_client(home: Path, messages_server: MessagesServer) -> Iterator[anthropic.Anthropic]:
    c = client(messages_server)
    yield c
    tracekit.uninstrument_anthropic(c)


def test_agent_answers_with_real_tools_and_a_full_trace(agent_client: anthropic.Anthropic, messages_server: MessagesServer, home: Path) -> None:
    messages_server.enqueue(
        reply(text("Let me look at the files."), tool_use("list_files", {}, id="t1")),
        reply(tool_use("read_file", {"path": "inventory.csv"}, id="t2"), tool_use("read_file", {"path": "../secrets"}, id="t3")),
        reply(tool_use("calculator", {"expression": "12*2.5 + 3*19.99 + 40*0.35 + 7*4.10"}, id="t4")),
        reply(text("The stock is worth 132.67 EUR.\nANSWER: 132.67")),
    )
    result = example.run("What is the stock in inventory.csv worth?", client=agent_client, model="claude-haiku-4-5")
    assert (result.answer, result.turns, result.tool_calls, result.stop_reason) == ("132.67", 4, 4, "end_turn")

    requests = messages_server.message_requests()
    assert requests[0].body["system"] == harness.SYSTEM_PROMPT  # type: ignore[index]
    assert [t["name"] for t in requests[0].body["tools"]] == list(harness.TOOLS)  # type: ignore[index]
    results = {b["tool_use_id"]: b for m in requests[3].body["messages"] for b in m["content"]  # type: ignore[index]
               if isinstance(m["content"], list) and b.get("type") == "tool_result"}
    assert "notes/meeting.md" in results["t1"]["content"] and "widget,12,2.50" in results["t2"]["content"]
    assert results["t3"]["is_error"] and "outside the workspace" in results["t3"]["content"]
    assert results["t4"]["content"] == "132.67"

    tools = rows("SELECT name, call_id, status, result, error, source FROM tool_calls ORDER BY start_time", home)
    assert [(t["name"], t["call_id"], t["status"], t["source"]) for t in tools] == [
        ("list_files", "t1", "ok", "span"), ("read_file", "t2", "ok", "span"),
        ("read_file", "t3", "error", "span"), ("calculator", "t4", "ok", "span")]
    assert "outside the workspace" in tools[2]["error"] and json.loads(tools[3]["result"]) == 132.67
    calls = rows("SELECT model, stop_reason, trace_id FROM llm_calls ORDER BY start_time", home)
    assert [c["stop_reason"] for c in calls] == ["tool_use"] * 3 + ["end_turn"]
    assert {c["trace_id"] for c in calls} == {result.trace_id}
    t = tracekit.trajectory(result.trace_id)
    assert t.name == "example_agent" and t.final_message.endswith("ANSWER: 132.67") and len(t.tool_calls) == 4


@pytest.mark.parametrize("expression, expected", [("2**10", 1024), ("sqrt(16) + abs(-2)", 6), ("7 / 2", 3.5), ("round(2.567, 2)", 2.57)])
def test_calculator(home: Path, expression: str, expected: float) -> None:
    assert example.calculator(expression) == expected


@pytest.mark.parametrize("expression, message", [
    ("__import__('os')", "unsupported"), ("1/0", "division by zero"), ("2**1000", "exponent too large"), ("1 +", "not an arithmetic")])
def test_calculator_refuses(home: Path, expression: str, message: str) -> None:
    with pytest.raises(example.ToolError, match=message):
        example.calculator(expression)


def test_file_tools(home: Path) -> None:
    ws = example.DEFAULT_WORKSPACE
    assert "marmalade" in example.read_file(ws, "notes/readme.txt")
    assert example.search_text(ws, r"Budget approved").startswith("notes/meeting.md:4:")
    with pytest.raises(example.ToolError, match="no file"):
        example.read_file(ws, "nope.txt")
    with pytest.raises(example.ToolError, match="bad regular expression"):
        example.search_text(ws, "(")
    with pytest.raises(example.ToolError, match="unknown tool"):
        example.run_tool("delete_everything", {}, ws)


def test_turn_policy_stops_the_loop(agent_client: anthropic.Anthropic, messages_server: MessagesServer) -> None:
    messages_server.responder = lambda body: reply(tool_use("calculator", {"expression": "1+1"}))
    result = example.run("loop forever", client=agent_client)
    assert result.turns == harness.MAX_TURNS and result.stop_reason == "tool_use"
    assert len(messages_server.message_requests()) == harness.MAX_TURNS


def _env(server: MessagesServer | None, home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(TRACEKIT_HOME=str(home), PYTHONPATH=str(ROOT))
    if server is not None:
        env.update(ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=server.url)
    return env


def test_command_line_runs_the_agent(home: Path, messages_server: MessagesServer) -> None:
    """As `python examples/agent/agent.py QUESTION` with an API key (here for the local server)."""
    messages_server.enqueue(reply(tool_use("search_text", {"pattern": "secret word"}, id="s1")),
                            reply(text("The word is marmalade.\nANSWER: marmalade")))
    proc = subprocess.run([sys.executable, str(AGENT_DIR / "agent.py"), "What is the secret word?"],
                          env=_env(messages_server, home), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert lines["answer"] == "marmalade" and lines["tool_calls"] == "1"
    assert messages_server.last_request.api_key == "test-key"
    [row] = rows(f"SELECT count(*) AS n FROM llm_calls WHERE trace_id = '{lines['trace_id']}'", home)
    assert row["n"] == 2
    missing = subprocess.run([sys.executable, str(AGENT_DIR / "agent.py"), "hi"], env=_env(None, home),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "ANTHROPIC_API_KEY" in missing.stderr
