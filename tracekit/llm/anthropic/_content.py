"""Anthropic Messages API content → OpenTelemetry GenAI "parts" messages (JSON-ready structures).

The GenAI semantic conventions record prompts and answers as
`[{"role": ..., "parts": [{"type": ...}, ...], "finish_reason": ...}]`. Every Anthropic content
block kind maps to a part:

    text               {"type": "text", "content": "..."}
    thinking           {"type": "reasoning", "content": "..."}
    redacted_thinking  {"type": "reasoning", "content": "[redacted thinking]", "redacted": true}
    tool_use           {"type": "tool_call", "id", "name", "arguments": {...}}
    server_tool_use    {"type": "server_tool_call", "id", "name", "arguments": {...}}
    tool_result        {"type": "tool_call_response", "id", "response", "is_error"?}
    *_tool_result      {"type": "server_tool_call_response", "id", "response"}
    image / document   {"type": "blob", "modality": "image", "mime_type", "content": "[image: 12 KB base64 omitted]"}
                       or {"type": "uri", "modality": "image", "uri": "https://..."} (data is never stored)
    anything else      {"type": <block type>, "content": <the block>}

Inputs may be SDK model objects or plain dicts (what callers pass); both work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..._util.jsonutil import to_jsonable

Part = dict[str, Any]


def _get(block: Any, key: str, default: Any = None) -> Any:
    if isinstance(block, Mapping):
        return block.get(key, default)
    return getattr(block, key, default)


def _size_label(data: Any) -> str:
    n = len(data) if isinstance(data, (str, bytes)) else 0
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def _media_part(block: Any, modality: str) -> Part:
    source = _get(block, "source") or {}
    stype = _get(source, "type")
    mime = _get(source, "media_type")
    if stype == "url":
        part: Part = {"type": "uri", "modality": modality, "uri": _get(source, "url")}
    elif stype == "file":
        part = {"type": "file", "modality": modality, "file_id": _get(source, "file_id")}
    elif stype == "text":  # plain-text document
        part = {"type": "text", "content": _get(source, "data") or "", "modality": modality}
    else:
        data = _get(source, "data")
        part = {"type": "blob", "modality": modality,
                "content": f"[{modality}: {_size_label(data)} base64 omitted]"}
    if mime:
        part["mime_type"] = mime
    title = _get(block, "title")
    if title:
        part["title"] = title
    return part


def _tool_result_content(content: Any) -> Any:
    """A tool_result's content: a string stays a string; blocks become text or placeholders."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        parts = [block_to_part(b) for b in content]
        if all(p.get("type") == "text" for p in parts):
            return "\n".join(str(p.get("content", "")) for p in parts)
        return parts
    return to_jsonable(content)


def block_to_part(block: Any) -> Part:
    """One Anthropic content block (dict or SDK object) as a GenAI part."""
    if isinstance(block, str):
        return {"type": "text", "content": block}
    kind = _get(block, "type")
    if kind == "text":
        return {"type": "text", "content": _get(block, "text", "")}
    if kind == "thinking":
        return {"type": "reasoning", "content": _get(block, "thinking", "")}
    if kind == "redacted_thinking":
        return {"type": "reasoning", "content": "[redacted thinking]", "redacted": True}
    if kind == "tool_use":
        return {"type": "tool_call", "id": _get(block, "id"), "name": _get(block, "name"),
                "arguments": to_jsonable(_get(block, "input"), scrub=False)}
    if kind == "server_tool_use":
        return {"type": "server_tool_call", "id": _get(block, "id"), "name": _get(block, "name"),
                "arguments": to_jsonable(_get(block, "input"), scrub=False)}
    if kind == "tool_result":
        part: Part = {"type": "tool_call_response", "id": _get(block, "tool_use_id"),
                      "response": _tool_result_content(_get(block, "content"))}
        if _get(block, "is_error"):
            part["is_error"] = True
        return part
    if isinstance(kind, str) and kind.endswith("_tool_result"):
        return {"type": "server_tool_call_response", "id": _get(block, "tool_use_id"), "name": kind,
                "response": to_jsonable(_get(block, "content"), scrub=False)}
    if kind == "image":
        return _media_part(block, "image")
    if kind == "document":
        return _media_part(block, "document")
    value = to_jsonable(block, scrub=False)
    if isinstance(value, dict):
        value.pop("type", None)
    return {"type": str(kind or "unknown"), "content": value}


def content_to_parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        return [block_to_part(b) for b in content]
    return [block_to_part(content)]


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """The request's `messages` as GenAI input messages (roles kept as Anthropic sends them)."""
    out: list[dict[str, Any]] = []
    if messages is None:
        return out
    for m in messages:
        out.append({"role": _get(m, "role", "user"), "parts": content_to_parts(_get(m, "content"))})
    return out


def system_instructions(system: Any) -> list[Part] | None:
    if system is None:
        return None
    return content_to_parts(system)


def output_messages(message: Any) -> list[dict[str, Any]]:
    """A response Message as the GenAI output messages (one assistant message)."""
    return [{
        "role": _get(message, "role", "assistant") or "assistant",
        "parts": content_to_parts(_get(message, "content")),
        "finish_reason": _get(message, "stop_reason"),
    }]


def tool_definitions(tools: Any) -> list[dict[str, Any]] | None:
    """The request's `tools` in the GenAI shape: {"type", "name", "description", "parameters"}."""
    if tools is None:
        return None
    out: list[dict[str, Any]] = []
    for t in tools:
        ttype = _get(t, "type") or "function"
        entry: dict[str, Any] = {"type": "function" if ttype in ("custom", "function") else ttype,
                                 "name": _get(t, "name")}
        if _get(t, "description"):
            entry["description"] = _get(t, "description")
        schema = _get(t, "input_schema")
        if schema is not None:
            entry["parameters"] = to_jsonable(schema, scrub=False)
        out.append(entry)
    return out


def usage_numbers(usage: Any) -> dict[str, int]:
    """Token counts from an Anthropic `usage` (object or dict); missing values are 0.

    `input_tokens` here is Anthropic's (uncached input only); callers add the cache counts when
    they need the GenAI total.
    """
    def num(key: str) -> int:
        value = _get(usage, key) if usage is not None else None
        return int(value) if isinstance(value, (int, float)) else 0

    out = {
        "input": num("input_tokens"),
        "output": num("output_tokens"),
        "cache_read": num("cache_read_input_tokens"),
        "cache_write": num("cache_creation_input_tokens"),
    }
    details = _get(usage, "output_tokens_details") if usage is not None else None
    thinking = _get(details, "thinking_tokens") if details is not None else None
    if isinstance(thinking, int):
        out["reasoning"] = thinking
    return out


def error_type(exc: BaseException) -> tuple[str, int | None]:
    """`error.type` for an exception: the API's error type, else the HTTP status, else the class name."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return err["type"], status if isinstance(status, int) else None
    if isinstance(status, int):
        return str(status), status
    return type(exc).__qualname__, None


def error_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
        if isinstance(msg, str):
            return msg
    return str(exc)
