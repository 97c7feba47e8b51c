"""ATIF steps → spans in the store (see `tracekit._atif` for the mapping)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ._config import get_settings
from ._errors import TrajectoryError
from ._json import dumps_capped
from ._spanrows import KIND_ATTR, RawSpan, span_row, spans_table

MS = 1_000_000


def _span_id(trace_id: str, n: int) -> str:
    return hashlib.sha256(f"{trace_id}/{n}".encode()).hexdigest()[:16]


def _json(value: Any) -> str:
    """Compact JSON under the configured field cap, as the instrumentations store messages."""
    return dumps_capped(value, get_settings().max_field_chars, scrub=False)


def _times(steps: list[dict[str, Any]], now_ns: int) -> list[int]:
    """A start time (ns) per step: its timestamp, else 1 ms after the previous one."""
    from ._atif import _parse_time

    out: list[int] = []
    for step in steps:
        t = _parse_time(step.get("timestamp"))
        if t is None:
            t = out[-1] + MS if out else now_ns
        out.append(t)
    return out


def _tool_defs(agent: dict[str, Any]) -> list[dict[str, Any]] | None:
    defs = agent.get("tool_definitions")
    if not isinstance(defs, list):
        return None
    out = []
    for d in defs:
        fn = d.get("function", d) if isinstance(d, dict) else {}
        if isinstance(fn, dict) and fn.get("name"):
            entry = {"type": "function", "name": fn["name"]}
            for key in ("description", "parameters"):
                if fn.get(key) is not None:
                    entry[key] = fn[key]
            out.append(entry)
    return out


def build_spans(doc: dict[str, Any], trace_id: str, now_ns: int, project: str | None) -> list[RawSpan]:
    from ._atif import message_text

    agent = doc["agent"]
    steps: list[dict[str, Any]] = doc["steps"]
    starts = _times(steps, now_ns)
    end_ns = (starts[-1] if starts else now_ns) + MS
    root_id = _span_id(trace_id, 0)
    spans: list[RawSpan] = []
    pending: list[dict[str, Any]] = []  # GenAI messages new since the last agent step
    system: list[dict[str, Any]] = []
    defs = _tool_defs(agent)
    first_user = final = None
    n = 0
    for i, step in enumerate(steps):
        start = starts[i]
        nxt = starts[i + 1] if i + 1 < len(steps) else None
        text = message_text(step.get("message"))
        source = step["source"]
        if source == "system":
            system.append({"type": "text", "content": text})
            continue
        if source == "user":
            first_user = text if first_user is None else first_user
            pending.append({"role": "user", "parts": [{"type": "text", "content": text}]})
            continue
        extra = (step.get("extra") or {}).get("tracekit") or {}
        latency = extra.get("latency_ms")
        end = start + round(latency * MS) if isinstance(latency, (int, float)) else (nxt if nxt and nxt >= start else start)
        calls = step.get("tool_calls") or []
        results = {r.get("source_call_id"): r for r in ((step.get("observation") or {}).get("results") or []) if isinstance(r, dict)}
        metrics = step.get("metrics") or {}
        model = step.get("model_name") or agent.get("model_name")
        if text:
            final = text
        if step.get("llm_call_count", 1) != 0:
            parts: list[dict[str, Any]] = []
            if step.get("reasoning_content"):
                parts.append({"type": "reasoning", "content": step["reasoning_content"]})
            if text:
                parts.append({"type": "text", "content": text})
            parts += [{"type": "tool_call", "id": c.get("tool_call_id"), "name": c["function_name"],
                       "arguments": c.get("arguments") or {}} for c in calls]
            attrs: dict[str, Any] = {KIND_ATTR: "llm", "gen_ai.operation.name": "chat", "tracekit.source": "atif",
                                     "gen_ai.input.messages": _json(pending),
                                     "gen_ai.output.messages": _json([{"role": "assistant", "parts": parts,
                                                                       "finish_reason": extra.get("stop_reason")}])}
            if model:
                attrs["gen_ai.request.model"] = attrs["gen_ai.response.model"] = model
            if system and n == 0:
                attrs["gen_ai.system_instructions"] = _json(system)
            if defs and n == 0:
                attrs["gen_ai.tool.definitions"] = _json(defs)
            if extra.get("stop_reason"):
                attrs["gen_ai.response.finish_reasons"] = [extra["stop_reason"]]
            for key, attr in (("prompt_tokens", "gen_ai.usage.input_tokens"), ("completion_tokens", "gen_ai.usage.output_tokens"),
                              ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"), ("cost_usd", "tracekit.cost_usd")):
                if isinstance(metrics.get(key), (int, float)):
                    attrs[attr] = metrics[key]
            cw = (metrics.get("extra") or {}).get("cache_creation_input_tokens")
            if isinstance(cw, int):
                attrs["gen_ai.usage.cache_creation.input_tokens"] = cw
            status, message = (2, str(extra["error"])) if extra.get("error") else (0, None)
            n += 1
            events = [(end, "atif.observation", {"content": _text(r.get("content"))})
                      for key, r in results.items() if key is None]
            spans.append(RawSpan(trace_id, _span_id(trace_id, n), root_id, f"chat {model}" if model else "chat",
                                 start, max(end, start), span_kind=3, status_code=status, status_message=message,
                                 attributes=attrs, events=events))
            pending = []
        for k, call in enumerate(calls):
            call_id = call.get("tool_call_id")
            result = results.get(call_id) or {}
            rextra = result.get("extra") or {}
            cextra = call.get("extra") or {}
            dur = cextra.get("duration_ms")
            t0 = end + k * 1000
            t1 = t0 + (round(dur * MS) if isinstance(dur, (int, float)) else 0)
            content = _text(result.get("content"))
            is_error = bool(rextra.get("is_error"))
            n += 1
            spans.append(RawSpan(trace_id, _span_id(trace_id, n), root_id, f"execute_tool {call['function_name']}", t0, t1,
                                 status_code=2 if is_error else 0,
                                 status_message=str(rextra.get("error") or content) if is_error else None,
                                 attributes={KIND_ATTR: "tool", "gen_ai.operation.name": "execute_tool",
                                             "gen_ai.tool.name": call["function_name"], "gen_ai.tool.call.id": call_id,
                                             "input.value": _json(call.get("arguments") or {}), "input.mime_type": "application/json",
                                             "output.value": _json(content), "output.mime_type": "application/json"}))
            pending.append({"role": "user", "parts": [{"type": "tool_call_response", "id": call_id, "response": content}]})
            end_ns = max(end_ns, t1)
        end_ns = max(end_ns, end)
    root_attrs: dict[str, Any] = {KIND_ATTR: "agent", "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent["name"],
                                  "tracekit.source": "atif", "atif.schema_version": doc["schema_version"]}
    for key, attr in (("version", "gen_ai.agent.version"),):
        if isinstance(agent.get(key), str):
            root_attrs[attr] = agent[key]
    for key in ("session_id", "trajectory_id", "notes"):
        if isinstance(doc.get(key), str):
            root_attrs[f"atif.{key}"] = doc[key]
    if first_user is not None:
        root_attrs["input.value"], root_attrs["input.mime_type"] = _json(first_user), "application/json"
    if final is not None:
        root_attrs["output.value"], root_attrs["output.mime_type"] = _json(final), "application/json"
    if project:
        root_attrs["tracekit.project"] = project
    start0 = starts[0] if starts else now_ns
    root = RawSpan(trace_id, root_id, None, agent["name"], start0, max(end_ns, start0), attributes=root_attrs,
                   resource={"service.name": agent["name"]}, scope="tracekit.atif")
    for s in spans:
        s.scope = "tracekit.atif"
        s.resource = root.resource
        if project:
            s.attributes = {**s.attributes, "tracekit.project": project}
    return [root, *spans]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # v1.6 content parts
        from ._atif import message_text

        return message_text(value)
    return json.dumps(value, ensure_ascii=False)


def store_trajectory(doc: dict[str, Any], *, trace_id: str, home: str | Path | None, project: str | None, now_ns: int) -> str:
    from ._query import database, sql_literal
    from ._store import Store

    home = home if home is not None else get_settings().home
    db = database(home)
    if db.sql(f"SELECT 1 FROM spans WHERE trace_id = {sql_literal(trace_id)} LIMIT 1").fetchall():
        raise TrajectoryError(f"this trajectory is already in the store as trace {trace_id} "
                              f"(see it with: tracekit traces show {trace_id[:12]} --transcript)")
    proj = project or get_settings().project
    rows = [span_row(s, default_project=proj) for s in build_spans(doc, trace_id, now_ns, project)]
    Store(home).write("spans", spans_table(rows), durable=True)
    return trace_id
