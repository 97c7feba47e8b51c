"""ATIF steps → spans in the store (see `tracekit.trajectories._atif` for the mapping)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .._config import get_settings
from .._errors import TrajectoryError
from .._util.jsonutil import dumps_capped, loads_limited
from ..store._rows import KIND_ATTR, RawSpan, span_row, spans_table

MS = 1_000_000

_SOURCES = ("system", "user", "agent")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _span_id(trace_id: str, n: int) -> str:
    return hashlib.sha256(f"{trace_id}/{n}".encode()).hexdigest()[:16]


def _json(value: Any) -> str:
    """Compact JSON under the configured field cap, as the instrumentations store messages."""
    return dumps_capped(value, get_settings().max_field_chars, scrub=False)


def _times(steps: list[dict[str, Any]], now_ns: int) -> list[int]:
    """A start time (ns) per step: its timestamp, else 1 ms after the previous one."""

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
    
        return message_text(value)
    return json.dumps(value, ensure_ascii=False)


def store_trajectory(doc: dict[str, Any], *, trace_id: str, home: str | Path | None, project: str | None, now_ns: int) -> str:
    from .._query import database
    from ..store import sql_literal
    from ..store._store import Store

    home = home if home is not None else get_settings().home
    db = database(home)
    if db.sql(f"SELECT 1 FROM spans WHERE trace_id = {sql_literal(trace_id)} LIMIT 1").fetchall():
        raise TrajectoryError(f"this trajectory is already in the store as trace {trace_id} "
                              f"(see it with: tracekit traces show {trace_id[:12]} --transcript)")
    proj = project or get_settings().project
    rows = [span_row(s, default_project=proj) for s in build_spans(doc, trace_id, now_ns, project)]
    Store(home).write("spans", spans_table(rows), durable=True)
    return trace_id


def validate(doc: Any, where: str = "document") -> None:
    """Raise TrajectoryError naming the first problem that makes `doc` unusable as ATIF."""
    def bad(msg: str) -> TrajectoryError:
        return TrajectoryError(f"{where}: {msg} (see the ATIF spec: harborframework.com/docs/trajectory-format)")

    if not isinstance(doc, dict):
        raise bad(f"an ATIF trajectory is a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if not isinstance(version, str) or not version.startswith("ATIF-v1."):
        raise bad(f"schema_version must be 'ATIF-v1.x' (tracekit reads v1.0-v1.7), got {version!r}")
    agent = doc.get("agent")
    if not isinstance(agent, dict) or not isinstance(agent.get("name"), str):
        raise bad("agent must be an object with a string name")
    steps = doc.get("steps")
    if not isinstance(steps, list):
        raise bad("steps must be an array of step objects")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise bad(f"steps[{i}] must be an object")
        if step.get("source") not in _SOURCES:
            raise bad(f"steps[{i}].source must be one of {', '.join(_SOURCES)}, got {step.get('source')!r}")
        msg = step.get("message", "")
        if not isinstance(msg, (str, list)):
            raise bad(f"steps[{i}].message must be a string (or content parts), got {type(msg).__name__}")
        calls = step.get("tool_calls") or []
        if not isinstance(calls, list) or any(not isinstance(c, dict) or not isinstance(c.get("function_name"), str) for c in calls):
            raise bad(f"steps[{i}].tool_calls must be objects with a function_name")
        if step.get("timestamp") is not None and _parse_time(step["timestamp"]) is None:
            raise bad(f"steps[{i}].timestamp {step['timestamp']!r} is not an ISO 8601 time")


def _parse_time(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return (parsed - _EPOCH) // dt.timedelta(microseconds=1) * 1000  # exact, no float rounding


def message_text(message: Any) -> str:
    """An ATIF message (a string, or v1.6 content parts) as text; images become placeholders."""
    if isinstance(message, str):
        return message
    out = []
    for part in message or []:
        if isinstance(part, dict) and part.get("type") == "text":
            out.append(str(part.get("text") or ""))
        elif isinstance(part, dict) and part.get("type") == "image":
            out.append(f"[image {((part.get('source') or {}).get('path')) or ''}]".replace(" ]", "]"))
    return "\n".join(out)


def import_atif(source: str | Path | dict[str, Any], *, home: str | Path | None = None, project: str | None = None) -> str:
    """Store one ATIF trajectory (a path or a parsed document) as a trace; returns its trace id."""
    if isinstance(source, dict):
        doc, where = source, "document"
    else:
        path = Path(source)
        try:
            doc = loads_limited(path.read_text())
        except OSError as exc:
            raise TrajectoryError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise TrajectoryError(f"{path}: not JSON ({exc})") from None
        where = str(path)
    validate(doc, where)
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return store_trajectory(doc, trace_id=digest[:32], home=home, project=project, now_ns=time.time_ns())
