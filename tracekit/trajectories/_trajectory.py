"""One agent run as a conversation: `tracekit.trajectory(trace_id)`.

    t = tracekit.trajectory("3f2a")            # a trace id or a unique prefix
    for step in t.steps:
        print(step.source, step.message, [c.name for c in step.tool_calls])
    t.total_cost_usd, t.input_tokens, t.llm_call_count
    t.to_dict()                                # plain JSON-ready data

Built from the `llm_calls` and `tool_calls` views, so it works for whatever instrumentation recorded
the run. Steps follow the ATIF vocabulary: `system` (the system prompt), `user` (each new user
message) and `agent` (one LLM call: its reasoning, text, tool calls with their results, tokens,
cost). A user message counts once, the first time a call sends it. Tool calls the model made
without an LLM span (or tools run outside any call) attach to the agent step before them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import QueryError
from .._util.jsonutil import loads_limited
from ..store import sql_literal


@dataclass
class ToolCall:
    """A tool the agent called: arguments and result as parsed JSON when they are JSON."""

    name: str
    arguments: Any = None
    result: Any = None
    call_id: str | None = None
    error: str | None = None
    status: str = "ok"
    duration_ms: float | None = None
    span_id: str | None = None


@dataclass
class Step:
    """One turn: `source` is "system", "user" or "agent" (ATIF's StepObject)."""

    source: str
    message: str = ""
    timestamp: dt.datetime | None = None
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    stop_reason: str | None = None
    error: str | None = None
    span_id: str | None = None


@dataclass
class Trajectory:
    """An agent run: the root span's facts plus the ordered steps."""

    trace_id: str
    name: str | None
    project: str | None = None
    experiment_id: str | None = None
    start_time: dt.datetime | None = None
    duration_ms: float | None = None
    status: str = "ok"
    input: Any = None
    output: Any = None
    steps: list[Step] = field(default_factory=list)
    tool_definitions: list[dict[str, Any]] = field(default_factory=list)
    agent_version: str | None = None

    @property
    def agent_steps(self) -> list[Step]:
        return [s for s in self.steps if s.source == "agent"]

    @property
    def llm_call_count(self) -> int:
        return sum(1 for s in self.agent_steps if s.span_id is not None and s.model is not None)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [c for s in self.agent_steps for c in s.tool_calls]

    def _sum(self, attr: str) -> int:
        return sum(getattr(s, attr) or 0 for s in self.agent_steps)

    @property
    def input_tokens(self) -> int:
        return self._sum("input_tokens")

    @property
    def output_tokens(self) -> int:
        return self._sum("output_tokens")

    @property
    def cache_read_tokens(self) -> int:
        return self._sum("cache_read_tokens")

    @property
    def total_cost_usd(self) -> float | None:
        costs = [s.cost_usd for s in self.agent_steps if s.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.agent_steps:
            if s.model:
                seen[s.model] = None
        return list(seen)

    @property
    def final_message(self) -> str:
        for s in reversed(self.agent_steps):
            if s.message:
                return s.message
        return ""

    def to_dict(self) -> dict[str, Any]:
        def conv(value: Any) -> Any:
            if isinstance(value, dt.datetime):
                return value.isoformat()
            if isinstance(value, list):
                return [conv(v) for v in value]
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            return value

        out: dict[str, Any] = conv(dataclasses.asdict(self))
        out.update(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                   total_cost_usd=self.total_cost_usd, llm_call_count=self.llm_call_count)
        return out


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return loads_limited(text)
    except ValueError:
        return text


def parts_text(parts: list[dict[str, Any]], kind: str) -> str:
    """The text of the parts of one type ("text" or "reasoning"), joined by blank lines."""
    return "\n\n".join(str(p.get("content") or "") for p in parts if isinstance(p, dict) and p.get("type") == kind)


def _user_texts(messages: Any) -> list[str]:
    out = []
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict) or m.get("role") not in ("user", "human"):
            continue
        parts = m.get("parts") or []
        text = parts_text(parts, "text")
        blobs = [p for p in parts if isinstance(p, dict) and p.get("type") in ("blob", "uri", "file")]
        if blobs:
            text = (text + "\n" if text else "") + " ".join(f"[{p.get('modality') or p['type']}]" for p in blobs)
        if text:
            out.append(text)
    return out


def _system_text(call: dict[str, Any]) -> str:
    system = _loads(call.get("system_instructions"))
    if isinstance(system, list):
        return parts_text(system, "text")
    if isinstance(system, str):
        return system
    for m in _loads(call.get("input_messages")) or []:
        if isinstance(m, dict) and m.get("role") == "system":
            return parts_text(m.get("parts") or [], "text")
    return ""


def _tool_call(row: dict[str, Any]) -> ToolCall:
    return ToolCall(name=row["name"], arguments=_loads(row["arguments"]), result=_loads(row["result"]),
                    call_id=row["call_id"], error=row["error"], status=row["status"],
                    duration_ms=row["duration_ms"], span_id=row["span_id"])


def build(trace: dict[str, Any] | None, calls: list[dict[str, Any]], tools: list[dict[str, Any]], trace_id: str) -> Trajectory:
    """A Trajectory from a `traces` row and the trace's `llm_calls` / `tool_calls` rows (time order)."""
    t = Trajectory(trace_id=trace_id, name=(trace or {}).get("name"))
    if trace:
        t.project, t.experiment_id = trace.get("project"), trace.get("experiment_id")
        t.start_time, t.duration_ms = trace.get("start_time"), trace.get("duration_ms")
        t.status, t.input, t.output = trace.get("status") or "ok", _loads(trace.get("input")), _loads(trace.get("output"))
    by_llm: dict[str, list[dict[str, Any]]] = {}
    loose: list[dict[str, Any]] = []
    for row in tools:
        (by_llm.setdefault(row["llm_span_id"], []) if row["llm_span_id"] else loose).append(row)
    if calls:
        system = _system_text(calls[0])
        if system:
            t.steps.append(Step("system", system, timestamp=calls[0]["start_time"]))
        defs = _loads(calls[0].get("tool_definitions"))
        t.tool_definitions = defs if isinstance(defs, list) else []
    elif t.input is not None:
        t.steps.append(Step("user", t.input if isinstance(t.input, str) else json.dumps(t.input, ensure_ascii=False),
                            timestamp=t.start_time))
    seen: set[str] = set()
    for call in calls:
        for text in _user_texts(_loads(call["input_messages"])):
            if text not in seen:
                seen.add(text)
                t.steps.append(Step("user", text, timestamp=call["start_time"]))
        out = _loads(call["output_messages"])
        parts = [p for m in out if isinstance(m, dict) for p in (m.get("parts") or [])] if isinstance(out, list) else []
        if not parts and isinstance(out, str):
            parts = [{"type": "text", "content": out}]
        step = Step("agent", parts_text(parts, "text"), timestamp=call["start_time"], reasoning=parts_text(parts, "reasoning"),
                    model=call["model"], input_tokens=call["input_tokens"], output_tokens=call["output_tokens"],
                    cache_read_tokens=call["cache_read_tokens"], cache_write_tokens=call["cache_write_tokens"],
                    cost_usd=call["cost_usd"], latency_ms=call["latency_ms"], stop_reason=call["stop_reason"],
                    span_id=call["span_id"])
        if call["status"] == "error":
            step.error = f"{call['error_type'] or 'error'}: {call['error_message'] or ''}".strip()
        step.tool_calls = [_tool_call(r) for r in by_llm.get(call["span_id"], [])]
        t.steps.append(step)
    for row in loose:  # tools outside any LLM call: after the agent step that precedes them
        host = None
        for s in t.agent_steps:
            if s.timestamp is not None and row["start_time"] is not None and s.timestamp <= row["start_time"]:
                host = s
        if host is None:
            host = Step("agent", "", timestamp=row["start_time"])
            later = [i for i, s in enumerate(t.steps) if s.source != "system" and s.timestamp is not None
                     and row["start_time"] is not None and s.timestamp > row["start_time"]]
            t.steps.insert(later[0] if later else len(t.steps), host)
        host.tool_calls.append(_tool_call(row))
    if not calls and t.output is not None:
        t.steps.append(Step("agent", t.output if isinstance(t.output, str) else json.dumps(t.output, ensure_ascii=False)))
    return t


def _rows(db: Any, sql: str) -> list[dict[str, Any]]:
    rel = db.sql(sql)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def trajectory(trace_id: str, *, home: str | Path | None = None) -> Trajectory:
    """The trace `trace_id` (or a unique prefix of it) as a Trajectory."""
    from .._config import flush
    from .._query import database

    flush()
    db = database(home)
    tid = resolve_trace_id(db, trace_id)
    trace = _rows(db, f"SELECT * FROM traces WHERE trace_id = {sql_literal(tid)}")
    calls = _rows(db, f"SELECT * FROM llm_calls WHERE trace_id = {sql_literal(tid)} ORDER BY start_time, span_id")
    tools = _rows(db, f"SELECT * FROM tool_calls WHERE trace_id = {sql_literal(tid)} ORDER BY start_time, span_id")
    t = build(trace[0] if trace else None, calls, tools, tid)
    if trace:
        root = _rows(db, f"SELECT attributes, resource FROM spans WHERE trace_id = {sql_literal(tid)} "
                         f"AND span_id = {sql_literal(trace[0]['root_span_id'])} LIMIT 1")
        if root:
            attrs = {**(_loads(root[0]["resource"]) or {}), **(_loads(root[0]["attributes"]) or {})}
            for key in ("gen_ai.agent.version", "agent.version", "service.version"):
                if isinstance(attrs.get(key), str):
                    t.agent_version = attrs[key]
                    break
    return t


def resolve_trace_id(db: Any, prefix: str) -> str:
    """A full trace id from a unique prefix (as git does for commits)."""
    p = prefix.strip().lower()
    if not p or not all(c in "0123456789abcdef" for c in p):
        raise QueryError(f"{prefix!r} is not a trace id (hex digits); find one with: tracekit traces list")
    found = db.sql(f"SELECT DISTINCT trace_id FROM spans WHERE trace_id LIKE {sql_literal(p + '%')} LIMIT 2").fetchall()
    if not found:
        raise QueryError(f"no trace with id {prefix!r}; find one with: tracekit traces list")
    if len(found) > 1:
        raise QueryError(f"trace id prefix {prefix!r} is ambiguous; give more digits")
    return str(found[0][0])
