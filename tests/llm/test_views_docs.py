"""Every SQL recipe in docs/trace-an-agent.md runs, and answers what it claims, on a recorded run."""

from __future__ import annotations

import re
from pathlib import Path

import anthropic
import pytest

import tracekit

from tests._support import DOCS
from tests._support.anthropic_api import client, rows
from tests._support.messages_server import MessagesServer, _estimate_tokens, reply, text, tool_use

DOC = DOCS / "trace-an-agent.md"
RECIPES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


@tracekit.trace(kind="tool", name="read_file")
def read_file(path: str) -> str:
    if path.startswith("/"):
        raise PermissionError(f"{path} is outside the workspace")
    return "hello"


def record(c: anthropic.Anthropic, server: MessagesServer) -> None:
    server.enqueue(
        reply(tool_use("read_file", {"path": "a.txt"}, id="r1"), tool_use("read_file", {"path": "/etc/passwd"}, id="r2"),
              model="claude-haiku-4-5", usage={"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 900}),
        reply(text("a.txt says hello"), stop_reason="max_tokens", model="claude-haiku-4-5"),
        reply(text("streamed"), model="claude-opus-4-6", chunk_delay_s=0.001),
    )
    with tracekit.span("agent", kind="agent"):
        first = c.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "read"}])
        results = []
        for b in first.content:
            try:
                results.append({"type": "tool_result", "tool_use_id": b.id, "content": read_file(**b.input)})
            except PermissionError as exc:
                results.append({"type": "tool_result", "tool_use_id": b.id, "content": str(exc), "is_error": True})
        c.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[
            {"role": "user", "content": "read"}, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}])
        with c.messages.stream(model="claude-opus-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_text()


def test_doc_has_the_promised_recipes() -> None:
    assert len(RECIPES) >= 7
    text_ = DOC.read_text()
    for title in ("Cost, tokens and LLM time per trace", "Slowest tools", "Failing tool calls", "Token use and cost by model"):
        assert title in text_


@pytest.mark.parametrize("index", range(len(RECIPES)))
def test_recipe_runs(instrumented: Path, messages_server: MessagesServer, index: int) -> None:
    record(client(messages_server), messages_server)
    out = rows(RECIPES[index], instrumented)
    assert out, RECIPES[index]
    first = RECIPES[index].split("\n", 1)[0]
    if "FROM llm_calls\nGROUP BY trace_id" in RECIPES[index]:
        later = [_estimate_tokens(r.body["messages"]) for r in messages_server.message_requests()[1:]]  # type: ignore[index]
        assert out[0]["llm_calls"] == 3 and out[0]["input_tokens"] == 1000 + sum(later)
        assert out[0]["cost_usd"] > (100 * 1.0 + 900 * 0.1 + 10 * 5.0) / 1e6
    if first.startswith("SELECT t.start_time"):
        assert [(r["name"], r["arguments"]) for r in out] == [("read_file", '{"path":"/etc/passwd"}')]
        assert "outside the workspace" in out[0]["error"] and out[0]["model"] == "claude-haiku-4-5"
    if "cache_hit_share" in RECIPES[index]:
        haiku = next(r for r in out if r["model"] == "claude-haiku-4-5")
        assert haiku["calls"] == 2 and 0 < haiku["cache_hit_share"] < 1
    if "max_tokens', 'length'" in RECIPES[index]:
        assert [r["model"] for r in out] == ["claude-haiku-4-5"]
    if "ttft" in RECIPES[index]:
        assert [r["model"] for r in out] == ["claude-opus-4-6"] and out[0]["p50_ttft_ms"] >= 0
