"""llm_calls / tool_calls over spans of the real PyPI instrumentations, through tracekit's provider.

openinference-instrumentation-anthropic (OpenInference `llm.*` attributes) and
opentelemetry-instrumentation-anthropic (OpenLLMetry, GenAI `gen_ai.*` attributes) wrap the same
SDK and call the same local Messages API server; their spans land in the store because tracekit's
TracerProvider is the global one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import pytest
from opentelemetry import trace as otel_trace

import tracekit

from tests._support.anthropic_api import TOOLS, client, rows
from tests._support.messages_server import MessagesServer, error, reply, text, thinking, tool_use

QUESTION = [{"role": "user", "content": "What is 6*7? Use the calculator."}]


def agent_run(c: anthropic.Anthropic, server: MessagesServer) -> None:
    """A two-step tool-using exchange, then a streamed call and a failing call."""
    server.enqueue(
        reply(thinking("I should use the tool."), text("Computing."), tool_use("calculator", {"expression": "6*7"}, id="toolu_42"),
              usage={"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 100}),
        reply(text("6*7 = 42."), usage={"input_tokens": 60, "output_tokens": 6}),
        reply(text("streamed answer"), usage={"input_tokens": 5, "output_tokens": 3}),
        error(400, message="messages: bad"),
    )
    with tracekit.span("agent", kind="agent"):
        first = c.messages.create(model="claude-opus-4-6", max_tokens=200, messages=QUESTION, tools=TOOLS, system="Be exact.")
        history = QUESTION + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_42", "content": "42"}]},
        ]
        c.messages.create(model="claude-opus-4-6", max_tokens=200, messages=history, tools=TOOLS)
        for _ in c.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=QUESTION, stream=True):
            pass
        with pytest.raises(anthropic.BadRequestError):
            c.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=QUESTION)


def check_rows(home: Path, source: str) -> list[dict[str, Any]]:
    calls = rows("SELECT * FROM llm_calls ORDER BY start_time", home)
    assert [c["source"] for c in calls] == [source] * 4, [(c["source"], c["name"]) for c in calls]
    first, second, streamed, failed = calls
    assert (first["provider"], first["model"], first["stop_reason"] in ("tool_use", "tool_call")) == ("anthropic", "claude-opus-4-6", True)
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"]) == (140, 12, 100)
    expected = (40 * 5.0 + 12 * 25.0 + 100 * 0.5) / 1e6  # priced in the view from the table
    assert first["cost_usd"] == pytest.approx(expected)
    assert json.loads(first["tool_calls"]) == [
        {"type": "tool_call", "id": "toolu_42", "name": "calculator", "arguments": {"expression": "6*7"}}]
    out_types = [p["type"] for p in json.loads(first["output_messages"])[0]["parts"]]
    assert out_types == ["reasoning", "text", "tool_call"]
    inputs = json.loads(second["input_messages"])
    responses = [p for m in inputs for p in m["parts"] if p["type"] == "tool_call_response"]
    assert [(r["id"], str(r["response"]).strip('"')) for r in responses] == [("toolu_42", "42")]
    assert json.loads(second["output_messages"])[0]["parts"][0]["content"] == "6*7 = 42."
    assert streamed["model"] == "claude-haiku-4-5"
    # as recorded: OpenLLMetry adds message_start's placeholder output count (1) to the final one (3)
    assert streamed["output_tokens"] == (4 if source == "otel-genai" else 3)
    assert json.loads(streamed["output_messages"])[0]["parts"][0]["content"] == "streamed answer"
    assert failed["status"] == "error" and failed["error_type"]

    [tool] = rows("SELECT * FROM tool_calls", home)
    assert (tool["name"], tool["call_id"], tool["source"], tool["status"]) == ("calculator", "toolu_42", "conversation", "ok")
    assert json.loads(tool["arguments"]) == {"expression": "6*7"} and json.loads(tool["result"]) == "42"
    assert tool["llm_span_id"] == first["span_id"]
    return calls


@pytest.fixture
def provider(home: Path) -> Iterator[Any]:
    yield otel_trace.get_tracer_provider()


@contextmanager
def instrumented(instrumentor: Any, provider: Any) -> Iterator[None]:
    """A third-party instrumentation of the anthropic SDK, reporting to `provider`, for the `with` block."""
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_openinference_instrumentation_spans(provider: Any, home: Path, messages_server: MessagesServer) -> None:
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    with instrumented(AnthropicInstrumentor(), provider):
        agent_run(client(messages_server), messages_server)
    names = {r["scope"] for r in rows("SELECT DISTINCT scope FROM spans", home)}
    assert "openinference.instrumentation.anthropic" in names and "com.anthropic.sdk.python" in names
    check_rows(home, "openinference")


def test_openllmetry_instrumentation_spans(provider: Any, home: Path, messages_server: MessagesServer) -> None:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    with instrumented(AnthropicInstrumentor(), provider):
        agent_run(client(messages_server), messages_server)
    assert rows("SELECT count(*) AS n FROM spans WHERE scope = 'opentelemetry.instrumentation.anthropic'", home)[0]["n"] == 4
    check_rows(home, "otel-genai")


def test_tracekit_and_openinference_together_count_each_call_once(provider: Any, home: Path, messages_server: MessagesServer) -> None:
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    with instrumented(AnthropicInstrumentor(), provider):
        tracekit.instrument_anthropic()
        try:
            agent_run(client(messages_server), messages_server)
        finally:
            tracekit.uninstrument_anthropic()
    assert rows("SELECT count(*) AS n FROM spans WHERE kind = 'llm'", home)[0]["n"] == 12  # 3 records of each call
    check_rows(home, "tracekit")
