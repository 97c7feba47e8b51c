"""Proposer context sections for eval suites: failing train cases and their trajectories.

When an optimizer target's metric comes from an eval suite (`tracekit eval run ...` as the run
command), the proposer should read *why* cases failed: the case, the output, the scorer's
explanation or the error, and the agent's LLM and tool calls. Two sections do that, both built
from spans (the eval's root span per case carries case id, split, status and explanation; the
sandbox brings every span home tagged with the experiment id):

- `eval_cases`: the incumbent's failing train cases with input, output, why, and the error's last
  traceback lines; for the two latest runs, which train cases they fixed or broke against it;
- `eval_trajectories`: for a few failing train cases of the incumbent (distinct reasons first),
  the ordered LLM calls (text, tool calls, stop reason) and tool calls (arguments, result or error,
  and what the model was actually sent when that differs: a cut result, a reworded error).

Only **train** cases are ever shown (the rule in docs/evals.md: the optimizer never sees val or
test traces). Both are trace sections: `--feedback scores` leaves them out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._util.jsonutil import loads_limited
from ..store import sql_literal
from ._section import elide

if TYPE_CHECKING:
    from ._section import SectionInput

MAX_CASES = 10
MAX_TRAJECTORIES = 3
MAX_STEPS = 24

_ROOTS = """
SELECT experiment_id, trace_id, span_id,
       attributes->>'$."tracekit.eval.case_id"' AS case_id,
       TRY_CAST(attributes->>'$."tracekit.eval.epoch"' AS BIGINT) AS epoch,
       attributes->>'$."tracekit.eval.status"' AS status,
       TRY_CAST(attributes->>'$."tracekit.eval.passed"' AS BOOLEAN) AS passed,
       attributes->>'$."tracekit.eval.explanation"' AS explanation,
       input, output, status_message,
       list_filter(events, lambda e: e.name = 'exception')[1].attributes->>'$."exception.stacktrace"' AS stack
FROM spans
WHERE kind = 'eval' AND parent_span_id IS NULL AND attributes->>'$."tracekit.eval.split"' = 'train'
  AND {where}
"""
CASE_BUDGET = 12000 // MAX_TRAJECTORIES  # one case's share of the trajectories section's budget



def _short(text: Any, limit: int) -> str:
    if text is None:
        return "—"
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _json_text(value: str | None) -> str:
    """A JSON column as readable text (a JSON string becomes its content)."""
    if value is None:
        return "—"
    try:
        v = loads_limited(value)
    except ValueError:
        return value
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _roots(inp: "SectionInput", ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    where = "experiment_id IN (" + ", ".join(sql_literal(i) for i in ids) + ")"
    return inp.sql(_ROOTS.format(where=where) + " ORDER BY case_id, epoch")


def _why(r: dict[str, Any]) -> str:
    return r["explanation"] or r["status_message"] or r["status"] or "failed"


def _case_line(r: dict[str, Any]) -> str:
    ep = f" epoch {r['epoch']}" if r["epoch"] and r["epoch"] > 1 else ""
    tag = f" [{r['status']}]" if r["status"] and r["status"] != "ok" else ""
    line = (f"- case `{r['case_id']}`{ep}{tag}: input {_short(_json_text(r['input']), 160)} → "
            f"output {_short(_json_text(r['output']), 160)}\n  why: {_short(_why(r), 300)}")
    if r["stack"]:
        tail = [ln for ln in r["stack"].strip().splitlines() if ln.strip()][-3:]
        line += "\n  traceback tail: " + " | ".join(_short(ln.strip(), 160) for ln in tail)
    return line


def render_cases(inp: "SectionInput") -> str:
    """The incumbent's failing train cases in full; for recent runs, what changed against it."""
    ids = [f["experiment_id"] for f in inp.focus if f.get("experiment_id")]
    rows = _roots(inp, ids)
    if not rows:
        return ""
    by_exp: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_exp.setdefault(r["experiment_id"], []).append(r)
    parent = inp.focus[0]
    base = by_exp.get(parent["experiment_id"], [])
    parts = []
    if base:
        failing = [r for r in base if not r["passed"]]
        lines = [f"### incumbent {parent['experiment_id']}: {len(base) - len(failing)}/{len(base)} train cases passed"]
        lines += [_case_line(r) for r in failing[:MAX_CASES]]
        if len(failing) > MAX_CASES:
            lines.append(f"- … and {len(failing) - MAX_CASES} more failing train cases")
        parts.append("\n".join(lines))
    base_pass = {(r["case_id"], r["epoch"]): bool(r["passed"]) for r in base}
    for f in inp.focus[1:]:
        mine = by_exp.get(f["experiment_id"], [])
        if not mine:
            continue
        broke = [r for r in mine if not r["passed"] and base_pass.get((r["case_id"], r["epoch"])) is True]
        fixed = [r for r in mine if r["passed"] and base_pass.get((r["case_id"], r["epoch"])) is False]
        passed = sum(1 for r in mine if r["passed"])
        lines = [f"### {f['experiment_id']} ({f.get('status')}): {passed}/{len(mine)} train cases passed; "
                 f"vs the incumbent {len(fixed)} fixed, {len(broke)} broken"]
        if fixed:
            lines.append("- fixed: " + ", ".join(f"`{r['case_id']}`" for r in fixed[:MAX_CASES]))
        lines += [_case_line(r) for r in broke[: MAX_CASES // 2]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _message_text(parts_json: str | None) -> tuple[str, list[str]]:
    """(text, tool calls as 'name(args)') of a llm_calls output_messages value."""
    if not parts_json:
        return "", []
    try:
        messages = loads_limited(parts_json)
    except ValueError:
        return parts_json, []
    texts: list[str] = []
    calls: list[str] = []
    for m in messages if isinstance(messages, list) else []:
        for p in (m.get("parts") or []) if isinstance(m, dict) else []:
            if p.get("type") == "text":
                texts.append(str(p.get("content") or ""))
            elif p.get("type") == "tool_call":
                calls.append(f"{p.get('name')}({json.dumps(p.get('arguments'), ensure_ascii=False)})")
    return " ".join(texts), calls


def _ends(text: str, limit: int) -> str:
    """`text` on one line, its head and tail kept when too long (a cut marker at the end survives)."""
    s = " ".join(text.split())
    if len(s) <= limit:
        return s
    tail = limit // 3
    return s[: limit - tail - 3] + " … " + s[-tail:]


def _seen_by_model(input_messages: list[str | None]) -> dict[str, str]:
    """call id -> the tool result text the model was sent (from the prompts of later LLM calls)."""
    seen: dict[str, str] = {}
    for raw in input_messages:
        try:
            messages = loads_limited(raw) if raw else []
        except ValueError:
            continue
        for m in messages if isinstance(messages, list) else []:
            for p in (m.get("parts") or []) if isinstance(m, dict) else []:
                if isinstance(p, dict) and p.get("type") == "tool_call_response" and p.get("id"):
                    resp = p.get("response")
                    seen[str(p["id"])] = resp if isinstance(resp, str) else json.dumps(resp, ensure_ascii=False)
    return seen


def _trajectory(inp: "SectionInput", trace_id: str) -> list[str]:
    tid = sql_literal(trace_id)
    judge = (f"SELECT span_id FROM spans WHERE trace_id = {tid} AND kind = 'eval' AND name LIKE 'score/%'")
    llm = inp.sql(f"SELECT span_id, start_time, model, stop_reason, input_messages, output_messages, error_type, error_message "
                  f"FROM llm_calls WHERE trace_id = {tid} AND (parent_span_id IS NULL OR parent_span_id NOT IN ({judge})) "
                  "ORDER BY start_time, span_id")
    tools = inp.sql(f"SELECT span_id, start_time, call_id, name, arguments, result, status, error FROM tool_calls "
                    f"WHERE trace_id = {tid} ORDER BY start_time, span_id NULLS LAST, call_id")
    seen = _seen_by_model([c["input_messages"] for c in llm])
    steps: list[tuple[Any, str]] = []
    for c in llm:
        text, calls = _message_text(c["output_messages"])
        if c["error_type"]:
            body = f"ERROR {c['error_type']}: {_short(c['error_message'], 200)}"
        else:
            body = f"stop {c['stop_reason']}: {_short(text, 240) if text else '(no text)'}"
            if calls:
                body += " → calls " + "; ".join(_short(x, 160) for x in calls)
        steps.append((c["start_time"], f"llm ({c['model']}) {body}"))
    for t in tools:
        out = f"ERROR {_short(t['error'], 240)}" if t["status"] == "error" else _ends(_json_text(t["result"]), 240)
        line = f"tool {t['name']}({_short(_json_text(t['arguments']), 160)}) → {out}"
        model_view = seen.get(str(t["call_id"])) if t["call_id"] else None
        shown = (t["error"] or "") if t["status"] == "error" else _json_text(t["result"])
        if model_view is not None and model_view.strip() != shown.strip():
            line += f"\n   the model was sent: {_ends(model_view, 240)}"
        steps.append((t["start_time"], line))
    steps.sort(key=lambda s: (s[0] is None, s[0]))  # stable: equal times keep the SQL order, LLM calls first
    lines = [f"{i}. {s}" for i, (_, s) in enumerate(steps[:MAX_STEPS], 1)]
    if len(steps) > MAX_STEPS:
        lines.append(f"… {len(steps) - MAX_STEPS} more steps")
    return lines


def render_trajectories(inp: "SectionInput") -> str:
    parent = inp.parent.get("experiment_id")
    if not parent:
        return ""
    failing = [r for r in _roots(inp, [parent]) if not r["passed"]]
    chosen: list[dict[str, Any]] = []
    reasons: set[str] = set()
    for r in failing:  # distinct reasons first: one case per kind of failure
        key = _why(r)[:80]
        if key not in reasons:
            reasons.add(key)
            chosen.append(r)
    chosen += [r for r in failing if r not in chosen]
    parts = []
    for r in chosen[:MAX_TRAJECTORIES]:
        steps = _trajectory(inp, r["trace_id"])
        head = f"### case `{r['case_id']}` (trace {r['trace_id']}): {_short(_why(r), 200)}"
        parts.append(head + "\n" + ("\n".join(steps) if steps else "(no LLM or tool calls recorded)"))
    return "\n\n".join(parts)


def render_case(inp: "SectionInput", trace_id: str, budget: int = CASE_BUDGET) -> str:
    """One train case by its trace id: the case line of `eval_cases` (input, output, why, traceback
    tail) and its trajectory as `eval_trajectories` shows it, cut to `budget`. Empty when the trace
    is not a train case's (val and test traces never reach an optimizer)."""
    rows = inp.sql(_ROOTS.format(where="trace_id = " + sql_literal(trace_id)))
    if not rows:
        return ""
    r = rows[0]
    text = _case_line(r)
    if not r["stack"]:  # the case went on after an error below it (a caught tool error): show where that was
        inner = inp.sql(
            "SELECT name, list_filter(events, lambda e: e.name = 'exception')[1].attributes->>'$.\"exception.stacktrace\"' AS stack "
            f"FROM spans WHERE trace_id = {sql_literal(trace_id)} AND len(events) > 0 ORDER BY start_time DESC")
        stack = next((x for x in inner if x["stack"]), None)
        if stack:
            tail = [ln for ln in stack["stack"].strip().splitlines() if ln.strip()][-6:]
            text += f"\n  stack trace (span {stack['name']}):\n" + "\n".join("    " + _short(ln, 200) for ln in tail)
    steps = _trajectory(inp, trace_id)
    text += "\n" + ("\n".join(steps) if steps else "(no LLM or tool calls recorded)")
    return elide(text, budget, keep="head")
