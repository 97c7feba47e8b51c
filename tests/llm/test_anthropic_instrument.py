"""tracekit.instrument_anthropic against the real SDK and a local Messages API server."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import anthropic
import pytest
import wrapt

import tracekit
from tracekit.store._prices import model_cost

from tests._support.anthropic_api import TOOLS, async_client, client, rows
from tests._support.messages_server import MessagesServer, error, reply, text, thinking, tool_use

USER = [{"role": "user", "content": "What is 2+2?"}]


def span_attrs(home: Path, where: str = "scope = 'tracekit.anthropic'") -> list[dict]:
    out = rows(f"SELECT name, span_kind, status, status_message, attributes, events FROM spans WHERE {where} ORDER BY start_time", home)
    for r in out:
        r["attributes"] = json.loads(r["attributes"])
    return out


def test_create_records_genai_span_and_llm_calls_row(instrumented: Path, messages_server: MessagesServer) -> None:
    messages_server.enqueue(reply(
        thinking("2 and 2 make 4, but check with the tool."), text("Let me compute."),
        tool_use("calculator", {"expression": "2+2"}, id="toolu_1"),
        model="claude-sonnet-4-6-20261001",
        usage={"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50},
    ))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 5000}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}, image]}]
    with tracekit.span("agent", kind="agent"):
        msg = client(messages_server).messages.create(
            model="claude-sonnet-4-6", max_tokens=300, messages=messages, system="You are terse.", tools=TOOLS,
            stop_sequences=["END"], thinking={"type": "enabled", "budget_tokens": 1024}, tool_choice={"type": "auto"})
    assert isinstance(msg, anthropic.types.Message) and msg.content[2].input == {"expression": "2+2"}

    [span] = span_attrs(instrumented)
    a = span["attributes"]
    assert span["name"] == "chat claude-sonnet-4-6" and span["span_kind"] == "client" and span["status"] == "ok"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.max_tokens"] == 300 and a["gen_ai.request.stop_sequences"] == ["END"]
    assert a["anthropic.thinking.budget_tokens"] == 1024 and a["server.address"] == "127.0.0.1"
    assert a["gen_ai.response.model"] == "claude-sonnet-4-6-20261001" and a["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert a["gen_ai.usage.input_tokens"] == 1150 and a["gen_ai.usage.cache_read.input_tokens"] == 1000
    inp = json.loads(a["gen_ai.input.messages"])
    assert inp[0]["parts"][0] == {"type": "text", "content": "What is 2+2?"}
    assert inp[0]["parts"][1]["type"] == "blob" and "base64 omitted" in inp[0]["parts"][1]["content"]
    assert "AAAA" not in a["gen_ai.input.messages"]  # image data is never stored
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "You are terse."}]
    assert json.loads(a["gen_ai.tool.definitions"])[0]["parameters"]["required"] == ["expression"]

    [row] = rows("SELECT * FROM llm_calls", instrumented)
    assert (row["source"], row["provider"], row["model"], row["stop_reason"]) == ("tracekit", "anthropic", "claude-sonnet-4-6-20261001", "tool_use")
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (1150, 20, 1000, 50)
    expected = (100 * 3.0 + 20 * 15.0 + 1000 * 0.30 + 50 * 3.75) / 1e6
    assert row["cost_usd"] == pytest.approx(expected) == model_cost("claude-sonnet-4-6", 100, 20, 1000, 50)
    parts = json.loads(row["output_messages"])[0]["parts"]
    assert [p["type"] for p in parts] == ["reasoning", "text", "tool_call"]
    assert json.loads(row["tool_calls"]) == [{"type": "tool_call", "id": "toolu_1", "name": "calculator", "arguments": {"expression": "2+2"}}]
    # the SDK's own span (a child of ours) is kept in spans but not counted twice in llm_calls
    assert rows("SELECT count(*) AS n FROM spans WHERE kind = 'llm'", instrumented)[0]["n"] == 2


def test_streams_record_when_they_end_with_time_to_first_token(instrumented: Path, messages_server: MessagesServer) -> None:
    messages_server.enqueue(
        reply(text("Hello there, streaming"), delay_s=0.05, chunk_delay_s=0.005, usage={"input_tokens": 7, "output_tokens": 4}),
        reply(thinking("hmm"), text("four"), tool_use("calculator", {"expression": "2+2"})),
    )
    c = client(messages_server)
    stream = c.messages.create(model="m", max_tokens=10, messages=USER, stream=True)
    assert isinstance(stream, anthropic.Stream)  # the proxy is transparent
    with stream:
        deltas = [e.delta.text for e in stream if e.type == "content_block_delta"]
    assert "".join(deltas) == "Hello there, streaming"
    with c.messages.stream(model="m", max_tokens=10, messages=USER, tools=TOOLS) as s:
        texts = list(s.text_stream)
        final = s.get_final_message()
    assert texts == ["four"] and final.content[2].input == {"expression": "2+2"}

    calls = rows("SELECT * FROM llm_calls ORDER BY start_time", instrumented)
    assert [c["stream"] for c in calls] == [True, True]
    assert calls[0]["ttft_ms"] >= 50 and calls[0]["ttft_ms"] <= calls[0]["latency_ms"]
    assert (calls[0]["input_tokens"], calls[0]["output_tokens"], calls[0]["stop_reason"]) == (7, 4, "end_turn")
    assert json.loads(calls[0]["output_messages"])[0]["parts"] == [{"type": "text", "content": "Hello there, streaming"}]
    assert [p["type"] for p in json.loads(calls[1]["output_messages"])[0]["parts"]] == ["reasoning", "text", "tool_call"]
    assert json.loads(calls[1]["tool_calls"])[0]["arguments"] == {"expression": "2+2"}
    outcomes = [s["attributes"]["tracekit.stream.outcome"] for s in span_attrs(instrumented)]
    assert outcomes == ["completed", "completed"]


def test_closed_and_abandoned_streams_are_recorded(instrumented: Path, messages_server: MessagesServer) -> None:
    messages_server.enqueue(reply(text("a long answer " * 20)), reply(text("another long answer " * 20)))
    c = client(messages_server)
    stream = c.messages.create(model="m", max_tokens=10, messages=USER, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    stream.close()
    abandoned = c.messages.create(model="m", max_tokens=10, messages=USER, stream=True)
    next(iter(abandoned))
    del abandoned
    gc.collect()
    spans = span_attrs(instrumented)
    assert [s["attributes"]["tracekit.stream.outcome"] for s in spans] == ["closed", "abandoned"]
    assert json.loads(spans[0]["attributes"]["gen_ai.output.messages"])[0]["parts"][0]["content"].startswith("a long")


def test_errors_are_recorded_then_reraised_unchanged(instrumented: Path, messages_server: MessagesServer) -> None:
    c = client(messages_server)
    messages_server.enqueue(error(400, message="max_tokens: must be positive"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.create(model="m", max_tokens=10, messages=USER)
    assert bad.value.status_code == 400
    messages_server.enqueue(error(429, retry_after=0.01), reply("fine after a retry"))
    assert client(messages_server, retries=1).messages.create(model="m", max_tokens=10, messages=USER).content[0].text == "fine after a retry"
    messages_server.enqueue(reply(text("partial answer that breaks"), error_after_events=4))
    with pytest.raises(anthropic.APIStatusError):
        for _ in c.messages.create(model="m", max_tokens=10, messages=USER, stream=True):
            pass

    calls = rows("SELECT status, error_type, error_message, output_messages FROM llm_calls ORDER BY start_time", instrumented)
    assert [r["status"] for r in calls] == ["error", "ok", "error"]
    assert calls[0]["error_type"] == "invalid_request_error" and "max_tokens: must be positive" in calls[0]["error_message"]
    assert calls[2]["error_type"] == "overloaded_error"
    assert json.loads(calls[2]["output_messages"])[0]["parts"][0]["content"].startswith("partial")  # what arrived is kept
    first = span_attrs(instrumented)[0]
    assert first["attributes"]["http.response.status_code"] == 400
    assert any(e["name"] == "exception" for e in first["events"])


def test_async_client_create_stream_and_helper(instrumented: Path, messages_server: MessagesServer) -> None:
    messages_server.enqueue("one", reply(text("two"), chunk_delay_s=0.002), "three", error(529))

    async def run() -> list[str]:
        c = async_client(messages_server)
        out = [(await c.messages.create(model="m", max_tokens=5, messages=USER)).content[0].text]
        stream = await c.messages.create(model="m", max_tokens=5, messages=USER, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        out.append("".join([e.delta.text async for e in stream if e.type == "content_block_delta"]))
        async with c.messages.stream(model="m", max_tokens=5, messages=USER) as s:
            out.append(await s.get_final_text())
        with pytest.raises(anthropic.InternalServerError):
            await c.messages.create(model="m", max_tokens=5, messages=USER)
        await c.close()
        return out

    assert asyncio.run(run()) == ["one", "two", "three"]
    calls = rows("SELECT status, stream, error_type, output_messages FROM llm_calls ORDER BY start_time", instrumented)
    assert [(r["status"], r["stream"]) for r in calls] == [("ok", False), ("ok", True), ("ok", True), ("error", False)]
    assert calls[3]["error_type"] == "overloaded_error"
    assert json.loads(calls[2]["output_messages"])[0]["parts"][0]["content"] == "three"


def test_nothing_changes_for_the_caller(home: Path, messages_server: MessagesServer) -> None:
    def run_all() -> tuple[object, ...]:
        messages_server.enqueue(
            reply(text("x"), tool_use("calculator", {"expression": "1"}, id="toolu_9"), id="msg_fixed"),
            reply(text("streamed"), id="msg_s"), error(400, message="nope"))
        c = client(messages_server)
        m = c.messages.create(model="m", max_tokens=5, messages=USER).model_dump()
        events = [e.model_dump() for e in c.messages.create(model="m", max_tokens=5, messages=USER, stream=True)]
        try:
            c.messages.create(model="m", max_tokens=5, messages=USER)
        except anthropic.BadRequestError as exc:
            body = {k: v for k, v in exc.body.items() if k != "request_id"}  # type: ignore[union-attr]
            err = (type(exc), exc.status_code, body)
        return m, events, err

    plain = run_all()
    tracekit.instrument_anthropic()
    try:
        traced = run_all()
    finally:
        tracekit.uninstrument_anthropic()
    assert plain == traced
    assert rows("SELECT count(*) AS n FROM llm_calls WHERE source = 'tracekit'", home)[0]["n"] == 3
    after = client(messages_server).messages.create(model="m", max_tokens=5, messages=USER)  # unpatched again
    assert after.content[0].text.startswith("echo")
    assert not isinstance(anthropic.resources.Messages.__dict__["create"], wrapt.ObjectProxy)  # the SDK's own method is back


def test_per_client_instrumentation(home: Path, messages_server: MessagesServer) -> None:
    traced, other = client(messages_server), client(messages_server)
    tracekit.instrument_anthropic(traced)
    try:
        traced.messages.create(model="traced-model", max_tokens=5, messages=USER)
        other.messages.create(model="other-model", max_tokens=5, messages=USER)
        traced.beta.messages.create(model="beta-model", max_tokens=5, messages=USER)
        tracekit.uninstrument_anthropic(traced)
        traced.messages.create(model="after-model", max_tokens=5, messages=USER)
    finally:
        tracekit.uninstrument_anthropic()
    models = [r["request_model"] for r in rows("SELECT request_model FROM llm_calls WHERE source = 'tracekit' ORDER BY start_time", home)]
    assert models == ["traced-model", "beta-model"]
    with pytest.raises(tracekit.ConfigError, match="messages.create"):
        tracekit.instrument_anthropic(object())


def test_capture_switches_and_size_cap(home: Path, messages_server: MessagesServer) -> None:
    tracekit.configure(home=home, project="test", capture_input=False, max_field_chars=300)
    tracekit.instrument_anthropic()
    try:
        messages_server.enqueue(reply(text("y" * 5000)))
        client(messages_server).messages.create(model="m", max_tokens=5, messages=USER, system="secret system prompt")
    finally:
        tracekit.uninstrument_anthropic()
        tracekit.configure(home=home, project="test")
    [span] = span_attrs(home)
    a = span["attributes"]
    assert "gen_ai.input.messages" not in a and "gen_ai.system_instructions" not in a
    out = a["gen_ai.output.messages"]
    assert len(out) <= 300 and json.loads(out)  # shortened, still valid JSON
    assert a["gen_ai.usage.output_tokens"] > 0


def test_price_table_is_overridable(home: Path, messages_server: MessagesServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracekit.store import _prices as prices

    saved = prices.model_prices()
    try:
        tracekit.instrument_anthropic(prices={"claude-test": {"input": 10, "output": 100}})
        messages_server.enqueue(reply("ok", usage={"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 2000}))
        client(messages_server).messages.create(model="claude-test-7", max_tokens=5, messages=USER)
        [row] = rows("SELECT cost_usd FROM llm_calls", home)
        assert row["cost_usd"] == pytest.approx((1000 * 10 + 100 * 100 + 2000 * 1.0) / 1e6)  # cache read defaults to 0.1 x input
        with pytest.raises(tracekit.ConfigError, match="USD per million tokens"):
            tracekit.set_model_prices({"bad": {"input": "cheap"}})
        path = tmp_path / "prices.json"
        path.write_text(json.dumps({"claude-file": {"input": 1, "output": 2}}))
        monkeypatch.setenv("TRACEKIT_PRICES", str(path))
        prices.reset_model_prices()  # re-reads the table from the environment
        assert prices.model_cost("claude-file-x", 1_000_000, 1_000_000) == pytest.approx(3.0)
        assert prices.model_cost("unknown-model", 10, 10) is None
    finally:
        tracekit.uninstrument_anthropic()
        prices.set_model_prices(saved, replace=True)


def test_generators_raw_responses_and_beta_streams(instrumented: Path, messages_server: MessagesServer) -> None:
    c = client(messages_server)
    messages_server.enqueue("from a generator", "raw", "beta streamed")
    msg = c.messages.create(model="m", max_tokens=5, messages=(m for m in USER), tools=(t for t in TOOLS))
    assert msg.content[0].text == "from a generator"
    sent = messages_server.last_request.body
    assert sent["messages"] == USER and sent["tools"][0]["name"] == "calculator"  # type: ignore[index]
    raw = c.messages.with_raw_response.create(model="m", max_tokens=5, messages=USER)
    assert raw.http_response.status_code == 200 and raw.parse().content[0].text == "raw"
    with c.beta.messages.stream(model="beta-m", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "beta streamed"
    calls = rows("SELECT request_model, output_messages FROM llm_calls ORDER BY start_time", instrumented)
    assert len(calls) == 3
    first = rows("SELECT input_messages FROM llm_calls ORDER BY start_time LIMIT 1", instrumented)[0]
    assert json.loads(first["input_messages"])[0]["parts"][0]["content"] == "What is 2+2?"
    assert calls[1]["output_messages"] is None  # a raw response is not read on the caller's behalf
    assert calls[2]["request_model"] == "beta-m" and "beta streamed" in calls[2]["output_messages"]
    raw_span = span_attrs(instrumented)[1]
    assert raw_span["attributes"]["tracekit.llm.raw_response"] is True
