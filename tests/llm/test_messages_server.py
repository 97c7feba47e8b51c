"""The test Messages API server against the real anthropic SDK (sync, async, streaming, errors)."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from tests._support.messages_server import MessagesServer, error, redacted_thinking, reply, text, thinking, tool_use

USER = [{"role": "user", "content": "What is 2+2? Traceback (most recent call last): boom"}]


def client(server: MessagesServer, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=retries)


def test_non_streaming_all_block_kinds_and_usage(messages_server: MessagesServer) -> None:
    messages_server.enqueue(reply(
        thinking("Let me add.", signature="s1"), redacted_thinking("xx"), text("Use the tool."),
        tool_use("calculator", {"expression": "2+2"}, id="toolu_1"),
        usage={"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5},
    ))
    msg = client(messages_server).messages.create(model="claude-x", max_tokens=50, messages=USER, system="Be terse.")
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert msg.content[3].input == {"expression": "2+2"} and msg.content[3].id == "toolu_1"
    assert msg.stop_reason == "tool_use" and msg.model == "claude-x"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (30, 12)
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (20, 5)
    req = messages_server.last_request
    assert req.api_key == "test-key" and req.headers["anthropic-version"]
    assert req.body is not None and req.body["system"] == "Be terse." and req.body["max_tokens"] == 50
    assert "Traceback (most recent call last)" in req.text and "Be terse." in req.text


def test_streaming_create_and_stream_helper(messages_server: MessagesServer) -> None:
    messages_server.enqueue(
        reply(thinking("Think " * 5), text("Hello streaming world"), chunk_chars=4,
              usage={"input_tokens": 9, "output_tokens": 7}),
        reply(text("four"), tool_use("calculator", {"expression": "2+2", "precision": 3})),
    )
    c = client(messages_server)
    events = list(c.messages.create(model="m", max_tokens=10, messages=USER, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    deltas = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert deltas == "Hello streaming world"
    assert events[-2].usage.output_tokens == 7
    with c.messages.stream(model="m", max_tokens=10, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "four"
    assert final.content[1].input == {"expression": "2+2", "precision": 3}
    assert final.stop_reason == "tool_use"
    assert messages_server.message_requests()[1].body["stream"] is True  # type: ignore[index]


def test_errors_in_api_shape_and_retry_after(messages_server: MessagesServer) -> None:
    messages_server.enqueue(error(400, message="max_tokens: too large"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(messages_server).messages.create(model="m", max_tokens=10, messages=USER)
    assert bad.value.status_code == 400 and bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    messages_server.enqueue(error(429, retry_after=0.01), error(529), reply("ok after retries"))
    msg = client(messages_server, retries=2).messages.create(model="m", max_tokens=10, messages=USER)
    assert msg.content[0].text == "ok after retries"
    messages_server.enqueue(error(500))
    with pytest.raises(anthropic.InternalServerError):
        client(messages_server).messages.create(model="m", max_tokens=10, messages=USER)
    assert len(messages_server.message_requests()) == 5


def test_stream_error_event_and_responder(messages_server: MessagesServer) -> None:
    messages_server.enqueue(reply(text("partial answer"), error_after_events=3))
    with pytest.raises(anthropic.APIStatusError) as exc:
        list(client(messages_server).messages.create(model="m", max_tokens=10, messages=USER, stream=True))
    assert "overloaded_error" in str(exc.value)
    messages_server.responder = lambda body: reply(text(f"model={body['model']}"))
    assert client(messages_server).messages.create(model="abc", max_tokens=5, messages=USER).content[0].text == "model=abc"
    messages_server.responder = None
    assert client(messages_server).messages.create(model="abc", max_tokens=5, messages=USER).content[0].text.startswith("echo: What is 2+2?")


def test_async_client_both_modes() -> None:
    async def run(server: MessagesServer) -> tuple[str, str]:
        c = anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0)
        m = await c.messages.create(model="m", max_tokens=5, messages=USER)
        async with c.messages.stream(model="m", max_tokens=5, messages=USER) as s:
            t = await s.get_final_text()
        await c.close()
        return m.content[0].text, t

    with MessagesServer() as server:
        server.enqueue("one", "two")
        assert asyncio.run(run(server)) == ("one", "two")
