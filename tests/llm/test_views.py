"""llm_calls / tool_calls normalize each dialect: GenAI attributes and events (current and older),
OpenLLMetry indexed attributes, OpenInference flattened messages, tool spans of every kind.

The spans are made with the OpenTelemetry API through tracekit's provider, carrying exactly the
attributes and events each convention defines (the real instrumentations are in
test_views_llm_thirdparty.py and test_anthropic_instrument.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

import tracekit

from tests._support.anthropic_api import client, rows
from tests._support.messages_server import MessagesServer, reply, text, tool_use


def tracer(name: str) -> otel_trace.Tracer:
    return otel_trace.get_tracer(name)


def one(home: Path, where: str) -> dict:
    [row] = rows(f"SELECT * FROM llm_calls WHERE {where}", home)
    return row


def test_genai_current_event_form(home: Path) -> None:
    with tracer("genai.events").start_as_current_span("chat gpt-x", kind=otel_trace.SpanKind.CLIENT) as sp:
        sp.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-x",
                           "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 3,
                           "gen_ai.response.finish_reasons": ["stop"]})
        sp.add_event("gen_ai.client.inference.operation.details", {
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi!"}], "finish_reason": "stop"}]),
        })
    r = one(home, "model = 'gpt-x'")
    assert (r["source"], r["provider"], r["stop_reason"], r["input_tokens"], r["total_tokens"]) == ("otel-genai", "openai", "stop", 11, 14)
    assert json.loads(r["input_messages"])[0]["parts"][0]["content"] == "hello"
    assert json.loads(r["output_messages"])[0]["parts"][0]["content"] == "hi!"
    assert r["cost_usd"] is None  # no price for an unknown model: NULL, not a guess


def test_openllmetry_legacy_indexed_attributes(home: Path) -> None:
    with tracer("opentelemetry.instrumentation.anthropic").start_as_current_span("anthropic.chat") as sp:
        sp.set_attributes({
            "gen_ai.system": "Anthropic", "llm.request.type": "chat", "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 100,
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": json.dumps([{"type": "text", "text": "add 1 and 2"}]),
            "gen_ai.prompt.2.role": "assistant",
            "gen_ai.prompt.2.content": json.dumps([{"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1, "b": 2}}]),
            "gen_ai.prompt.3.role": "user",
            "gen_ai.prompt.3.content": json.dumps([{"type": "tool_result", "tool_use_id": "t1", "content": "3"}]),
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "It is 3.",
            "gen_ai.completion.0.finish_reason": "end_turn",
            "gen_ai.completion.1.role": "assistant",
            "gen_ai.completion.1.tool_calls.0.id": "t2", "gen_ai.completion.1.tool_calls.0.name": "add",
            "gen_ai.completion.1.tool_calls.0.arguments": '{"a": 3, "b": 4}',
        })
    r = one(home, "model LIKE 'claude-3-5-haiku%'")
    assert (r["provider"], r["input_tokens"], r["output_tokens"], r["stop_reason"]) == ("Anthropic", 1000, 100, "end_turn")
    assert r["cost_usd"] == pytest.approx((1000 * 0.8 + 100 * 4.0) / 1e6)
    msgs = json.loads(r["input_messages"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["parts"] == [{"type": "text", "content": "add 1 and 2"}]
    assert msgs[2]["parts"][0] == {"type": "tool_call", "id": "t1", "name": "add", "arguments": {"a": 1, "b": 2}}
    assert msgs[3]["parts"][0]["type"] == "tool_call_response" and msgs[3]["parts"][0]["id"] == "t1"
    out = json.loads(r["output_messages"])
    assert out[0]["parts"] == [{"type": "text", "content": "It is 3."}] and out[0]["finish_reason"] == "end_turn"
    assert json.loads(r["tool_calls"]) == [{"type": "tool_call", "id": "t2", "name": "add", "arguments": {"a": 3, "b": 4}}]


def test_genai_older_per_message_and_content_events(home: Path) -> None:
    with tracer("genai.v128").start_as_current_span("chat m1") as sp:
        sp.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "m1"})
        sp.add_event("gen_ai.system.message", {"content": "You add numbers."})
        sp.add_event("gen_ai.user.message", {"content": "2+3?"})
        sp.add_event("gen_ai.assistant.message", {"tool_calls": json.dumps(
            [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":2,"b":3}'}}])})
        sp.add_event("gen_ai.tool.message", {"id": "c1", "content": "5"})
        sp.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": json.dumps({"content": "5."})})
    with tracer("genai.v126").start_as_current_span("chat m2") as sp:
        sp.set_attributes({"gen_ai.system": "openai", "gen_ai.request.model": "m2"})
        sp.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "hey"}])})
        sp.add_event("gen_ai.content.completion", {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "yo"}])})
    r1 = one(home, "model = 'm1'")
    msgs = json.loads(r1["input_messages"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[2]["parts"] == [{"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}]
    assert msgs[3]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "5"}]
    assert json.loads(r1["output_messages"]) == [{"role": "assistant", "parts": [{"type": "text", "content": "5."}], "finish_reason": "stop"}]
    assert r1["stop_reason"] == "stop"
    r2 = one(home, "model = 'm2'")
    assert json.loads(r2["input_messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "hey"}]}]
    assert json.loads(r2["output_messages"])[0]["parts"][0]["content"] == "yo"


def test_openinference_flattened_messages_and_tool_span(home: Path) -> None:
    t = tracer("openinference.instrumentation.other")
    with t.start_as_current_span("agent") as root:
        root.set_attribute("openinference.span.kind", "AGENT")
        with t.start_as_current_span("llm") as sp:
            sp.set_attributes({
                "openinference.span.kind": "LLM", "llm.system": "anthropic", "llm.provider": "anthropic",
                "llm.model_name": "claude-haiku-4-5", "llm.token_count.prompt": 200, "llm.token_count.completion": 20,
                "llm.token_count.prompt_details.cache_read": 150, "llm.cost.total": 0.5,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.contents.0.message_content.type": "text",
                "llm.input_messages.0.message.contents.0.message_content.text": "look at this",
                "llm.input_messages.0.message.contents.1.message_content.type": "image",
                "llm.input_messages.0.message.contents.1.message_content.image.image.url": "data:image/png;base64,AAAA",
                "llm.input_messages.1.message.role": "tool", "llm.input_messages.1.message.tool_call_id": "x9",
                "llm.input_messages.1.message.content": "earlier result",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Let me search.",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_7",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": "cats"}',
                "llm.finish_reason": "tool_use", "llm.invocation_parameters": '{"max_tokens": 64, "temperature": 0.2}',
            })
        with t.start_as_current_span("search") as tool:
            tool.set_attributes({"openinference.span.kind": "TOOL", "tool.name": "search",
                                 "input.value": '{"q": "cats"}', "input.mime_type": "application/json",
                                 "output.value": '["cat facts"]', "output.mime_type": "application/json"})
    r = one(home, "source = 'openinference'")
    assert (r["model"], r["input_tokens"], r["cache_read_tokens"], r["cost_usd"], r["stop_reason"]) == ("claude-haiku-4-5", 200, 150, 0.5, "tool_use")
    assert (r["max_tokens"], r["temperature"]) == (64, 0.2)
    msgs = json.loads(r["input_messages"])
    assert msgs[0]["parts"][0] == {"type": "text", "content": "look at this"}
    assert msgs[0]["parts"][1]["type"] == "blob" and "AAAA" not in r["input_messages"]
    assert msgs[1] == {"role": "tool", "parts": [{"type": "tool_call_response", "id": "x9", "response": "earlier result"}], "finish_reason": None}
    assert json.loads(r["tool_calls"]) == [{"type": "tool_call", "id": "call_7", "name": "search", "arguments": {"q": "cats"}}]
    [tc] = rows("SELECT * FROM tool_calls", home)
    assert (tc["name"], tc["call_id"], tc["source"], tc["llm_span_id"]) == ("search", "call_7", "span", r["span_id"])
    assert json.loads(tc["arguments"]) == {"q": "cats"} and json.loads(tc["result"]) == ["cat facts"]


def test_tool_spans_of_each_kind_and_their_errors(home: Path) -> None:
    @tracekit.trace(kind="tool", name="read_file")
    def read_file(path: str) -> str:
        if path == "missing.txt":
            raise FileNotFoundError(path)
        return "contents"

    with tracekit.span("agent", kind="agent"):
        read_file("a.txt")
        with pytest.raises(FileNotFoundError):
            read_file("missing.txt")
        with tracer("genai.tools").start_as_current_span("execute_tool fetch") as sp:
            sp.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "fetch",
                               "gen_ai.tool.call.id": "call_f", "gen_ai.tool.call.arguments": '{"url": "http://x"}',
                               "gen_ai.tool.call.result": '"page"', "error.type": "TimeoutError"})
            sp.set_status(Status(StatusCode.ERROR, "timed out"))
    calls = rows("SELECT * FROM tool_calls ORDER BY start_time", home)
    assert [(c["name"], c["status"], c["source"]) for c in calls] == [
        ("read_file", "ok", "span"), ("read_file", "error", "span"), ("fetch", "error", "span")]
    assert json.loads(calls[0]["arguments"]) == {"path": "a.txt"} and json.loads(calls[0]["result"]) == "contents"
    assert "FileNotFoundError" in calls[1]["error"] and calls[1]["duration_ms"] >= 0
    assert (calls[2]["call_id"], calls[2]["error"], calls[2]["arguments"]) == ("call_f", "timed out", '{"url": "http://x"}')


def test_requested_calls_join_tool_spans_by_name_and_order(home: Path, messages_server: MessagesServer) -> None:
    """A decorated tool has no call id: the k-th span named N is the k-th call of N the model asked for."""
    @tracekit.trace(kind="tool", name="calculator")
    def calculator(expression: str) -> float:
        return float(eval(expression, {"__builtins__": {}}))  # test-only: fixed expressions below

    @tracekit.trace(kind="llm", name="ask")  # a decorated function around an instrumented call: counted once
    def ask(messages: list) -> object:
        return client(messages_server).messages.create(model="claude-haiku-4-5", max_tokens=50, messages=messages)

    messages_server.enqueue(
        reply(tool_use("calculator", {"expression": "1+1"}, id="c_a"), tool_use("calculator", {"expression": "2*3"}, id="c_b")),
        reply(text("2 and 6")))
    tracekit.instrument_anthropic()
    try:
        with tracekit.span("agent", kind="agent"):
            msg = ask([{"role": "user", "content": "compute"}])
            results = [{"type": "tool_result", "tool_use_id": b.id, "content": str(calculator(**b.input))} for b in msg.content]
            ask([{"role": "user", "content": "compute"}, {"role": "assistant", "content": msg.content}, {"role": "user", "content": results}])
    finally:
        tracekit.uninstrument_anthropic()
    calls = rows("SELECT * FROM llm_calls ORDER BY start_time", home)
    assert [c["source"] for c in calls] == ["tracekit", "tracekit"]  # the decorator spans and SDK spans fold in
    tools = rows("SELECT * FROM tool_calls ORDER BY start_time", home)
    assert [(t["call_id"], t["source"], json.loads(t["arguments"]), json.loads(t["result"])) for t in tools] == [
        ("c_a", "span", {"expression": "1+1"}, 2.0), ("c_b", "span", {"expression": "2*3"}, 6.0)]
    assert {t["llm_span_id"] for t in tools} == {calls[0]["span_id"]}


def test_price_change_reaches_open_databases(home: Path) -> None:
    from tracekit.store import _prices as prices

    with tracer("genai.x").start_as_current_span("chat") as sp:
        sp.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "x", "gen_ai.request.model": "zeta-1",
                           "gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 0})
    assert one(home, "model = 'zeta-1'")["cost_usd"] is None
    saved = prices.model_prices()
    try:
        tracekit.set_model_prices({"zeta": {"input": 2.0, "output": 4.0}})
        assert one(home, "model = 'zeta-1'")["cost_usd"] == pytest.approx(2.0)
    finally:
        prices.set_model_prices(saved, replace=True)
