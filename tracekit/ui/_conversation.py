"""An LLM call's messages (GenAI "parts" JSON from the `llm_calls` view) as a conversation to show.

    conversation(call) -> {"system": [...parts], "messages": [{"role", "parts": [...]}], "output": [...]}

Parts are normalised to what the template draws: text, reasoning (thinking), tool_call (name and
arguments), tool_call_response (its result), and anything else as its JSON. Every value is text for
the template to escape; nothing here is markup.
"""

from __future__ import annotations

import json
from typing import Any

from ._render import clip, parse

MAX_MESSAGES = 200  # messages of one call drawn (a long agent loop repeats its history in every call)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return clip(value)
    return clip(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def part(p: Any) -> dict[str, str]:
    if not isinstance(p, dict):
        return {"type": "text", "text": _text(p)}
    kind = str(p.get("type") or "text")
    if kind in ("text", "reasoning"):
        return {"type": kind, "text": _text(p.get("content", p.get("text")))}
    if kind == "tool_call":
        args = p.get("arguments")
        if isinstance(args, str):
            parsed = parse(args)
            args = parsed if parsed is not None else args
        return {"type": kind, "name": _text(p.get("name")), "id": _text(p.get("id")), "text": _text(args)}
    if kind == "tool_call_response":
        return {"type": kind, "id": _text(p.get("id")), "text": _text(p.get("response", p.get("result")))}
    return {"type": "other", "name": kind, "text": _text(p)}


def messages(raw: Any) -> list[dict[str, Any]]:
    value = parse(raw) if isinstance(raw, str) else raw
    if value is None:
        return [{"role": "text", "parts": [part(raw)]}] if raw else []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [{"role": "text", "parts": [part(value)]}]
    out = []
    for m in value[:MAX_MESSAGES]:
        if isinstance(m, dict) and isinstance(m.get("parts"), list):
            out.append({"role": str(m.get("role") or "?"), "parts": [part(p) for p in m["parts"]]})
        elif isinstance(m, dict) and "content" in m:
            content = m["content"]
            parts = content if isinstance(content, list) else [{"type": "text", "content": content}]
            out.append({"role": str(m.get("role") or "?"), "parts": [part(p) for p in parts]})
        else:
            out.append({"role": "?", "parts": [part(m)]})
    if len(value) > MAX_MESSAGES:
        out.append({"role": "note", "parts": [{"type": "text", "text": f"... {len(value) - MAX_MESSAGES} more messages (see SQL)"}]})
    return out


def conversation(call: dict[str, Any]) -> dict[str, Any]:
    system_raw = call.get("system_instructions")
    system = []
    if system_raw:
        parsed = parse(system_raw)
        items = parsed if isinstance(parsed, list) else [{"type": "text", "content": parsed if parsed is not None else system_raw}]
        system = [part(p) for p in items]
    return {"system": system, "messages": messages(call.get("input_messages")), "output": messages(call.get("output_messages"))}
