"""Harbor's Agent Trajectory Interchange Format (ATIF) to and from the store.

    doc = tracekit.export_atif("3f2a")                 # dict, schema_version "ATIF-v1.7"
    tracekit.import_atif("runs/trial-1/agent/trajectory.json")   # -> the new trace id

    tracekit traces export-atif 3f2a -o trajectory.json
    tracekit traces import-atif runs/**/trajectory.json

Export: one trace becomes one trajectory (ATIF RFC 0001, v1.7): a `system` step for the system
prompt, a `user` step per new user message, an `agent` step per LLM call with `reasoning_content`,
`tool_calls` and their results as the `observation`, and `metrics` (`prompt_tokens` counts cached
tokens too, `cached_tokens` the cache reads, `cost_usd`; cache writes go to `metrics.extra`).
tracekit specifics (span ids, latency, stop reason, errors) go in `extra` objects, as ATIF asks.

Import: any `ATIF-v1.x` document becomes a trace: an `agent` root span, an `llm` span per agent
step (GenAI attributes; `gen_ai.input.messages` holds the messages new to that step: the user
turns and tool results since the previous step) and an `execute_tool` span per tool call with its
observation as result (all under the `max_field_chars` cap). Timestamps come from the steps (missing ones are spaced 1 ms apart). The
trace id is derived from the document, so importing the same file twice is refused, not duplicated.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ._trajectory import Step, Trajectory, trajectory

ATIF_VERSION = "ATIF-v1.7"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _tool_definitions(defs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in defs:
        if not isinstance(d, dict):
            continue
        fn = {k: d[k] for k in ("name", "description", "parameters") if d.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _agent_step(step: Step, step_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"step_id": step_id, "source": "agent", "message": step.message}
    if step.timestamp is not None:
        out["timestamp"] = _iso(step.timestamp)
    if step.model:
        out["model_name"] = step.model
    if step.reasoning:
        out["reasoning_content"] = step.reasoning
    out["llm_call_count"] = 1 if step.span_id is not None and step.model is not None else 0
    calls, results = [], []
    for k, c in enumerate(step.tool_calls):
        call_id = c.call_id or f"call_{step_id}_{k + 1}"
        args = c.arguments if isinstance(c.arguments, dict) else ({} if c.arguments is None else {"value": c.arguments})
        extra = {k2: v for k2, v in (("span_id", c.span_id), ("duration_ms", c.duration_ms)) if v is not None}
        calls.append({"tool_call_id": call_id, "function_name": c.name, "arguments": args, **({"extra": extra} if extra else {})})
        content = c.error if c.status == "error" and c.result is None else c.result
        result: dict[str, Any] = {"source_call_id": call_id, "content": "" if content is None else _text(content)}
        if c.status == "error":
            result["extra"] = {"is_error": True, "error": c.error}
        results.append(result)
    if calls:
        out["tool_calls"] = calls
        out["observation"] = {"results": results}
    if out["llm_call_count"]:
        metrics: dict[str, Any] = {}
        for key, value in (("prompt_tokens", step.input_tokens), ("completion_tokens", step.output_tokens),
                           ("cached_tokens", step.cache_read_tokens), ("cost_usd", step.cost_usd)):
            if value is not None:
                metrics[key] = value
        if step.cache_write_tokens:
            metrics["extra"] = {"cache_creation_input_tokens": step.cache_write_tokens}
        if metrics:
            out["metrics"] = metrics
    extra = {k: v for k, v in (("span_id", step.span_id), ("latency_ms", step.latency_ms),
                               ("stop_reason", step.stop_reason), ("error", step.error)) if v is not None}
    if extra:
        out["extra"] = {"tracekit": extra}
    return out


def to_atif(t: Trajectory, *, agent_name: str | None = None, agent_version: str | None = None) -> dict[str, Any]:
    """A Trajectory as an ATIF document (a JSON-ready dict)."""
    steps: list[dict[str, Any]] = []
    for step in t.steps:
        step_id = len(steps) + 1
        if step.source == "agent":
            steps.append(_agent_step(step, step_id))
        else:
            entry: dict[str, Any] = {"step_id": step_id, "source": step.source, "message": step.message}
            if step.timestamp is not None:
                entry["timestamp"] = _iso(step.timestamp)
            steps.append(entry)
    models = t.models
    agent: dict[str, Any] = {"name": agent_name or t.name or "agent", "version": agent_version or t.agent_version or "unknown"}
    if models:
        agent["model_name"] = max(models, key=lambda m: sum(1 for s in t.agent_steps if s.model == m))
    if t.tool_definitions:
        agent["tool_definitions"] = _tool_definitions(t.tool_definitions)
    final: dict[str, Any] = {"total_prompt_tokens": t.input_tokens, "total_completion_tokens": t.output_tokens,
                             "total_cached_tokens": t.cache_read_tokens, "total_steps": len(steps)}
    if t.total_cost_usd is not None:
        final["total_cost_usd"] = t.total_cost_usd
    tk = {k: v for k, v in (("trace_id", t.trace_id), ("project", t.project), ("experiment_id", t.experiment_id),
                            ("status", t.status), ("duration_ms", t.duration_ms)) if v is not None}
    return {"schema_version": ATIF_VERSION, "session_id": t.trace_id, "trajectory_id": t.trace_id, "agent": agent,
            "steps": steps, "final_metrics": final, "extra": {"tracekit": tk}}


def export_atif(trace_id: str, path: str | Path | None = None, *, home: str | Path | None = None,
                agent_name: str | None = None, agent_version: str | None = None) -> dict[str, Any]:
    """The trace as an ATIF document; also written to `path` (JSON) when given."""
    doc = to_atif(trajectory(trace_id, home=home), agent_name=agent_name, agent_version=agent_version)
    if path is not None:
        Path(path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return doc


# ---- import ---------------------------------------------------------------------------------------
