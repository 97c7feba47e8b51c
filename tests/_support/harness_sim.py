"""Scripted models for the agent-harness example, served by `messages_server` (no network, no key).

- `task_model(body)`: a simulated task agent model. It plans per question (read, search, calculate,
  answer) and reacts to the harness it is sent the way a real model would: it sees only the part of
  a tool result the harness let through, it cannot recover from a tool error whose message was
  dropped, it stops when the turn limit stops it, and it writes `ANSWER: ...` only when the system
  prompt asks for it.
- `meta_model(body)`: a rule-based meta-agent answering the optimizer's proposer. It reads only its
  prompt (the context tracekit rendered) and, when it finds the evidence of a harness defect there,
  replies with the SEARCH/REPLACE edit that cures it. `fired` records which rules fired.
"""

from __future__ import annotations

import re
from typing import Any

from .messages_server import reply, text, tool_use

TASK_MODEL = "sim-task-agent"
META_MODEL = "sim-meta-agent"


def _conversation(body: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any], str, bool]]]:
    """(question, [(tool, input, result text, is_error), ...]) of a task-agent request."""
    msgs = body["messages"]
    question = msgs[0]["content"] if isinstance(msgs[0]["content"], str) else msgs[0]["content"][0]["text"]
    uses: dict[str, tuple[str, dict[str, Any]]] = {}
    steps = []
    for m in msgs[1:]:
        for b in m["content"] if isinstance(m["content"], list) else []:
            if b.get("type") == "tool_use":
                uses[b["id"]] = (b["name"], b["input"])
            elif b.get("type") == "tool_result":
                name, args = uses[b["tool_use_id"]]
                content = b["content"] if isinstance(b["content"], str) else " ".join(c.get("text", "") for c in b["content"])
                steps.append((name, args, content, bool(b.get("is_error"))))
    return question, steps


def _final(body: dict[str, Any], sentence: str, value: Any) -> Any:
    if "ANSWER:" in str(body.get("system") or ""):
        return reply(text(f"{sentence}\nANSWER: {value}"))
    return reply(text(f"Based on the files, the answer is {value}."))


def _rows(content: str) -> list[tuple[str, int, float]]:
    return [(m.group(1), int(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^([a-z]+),(\d+),([\d.]+)$", content, re.M)]


def _cut_note(content: str) -> str:
    m = re.search(r"cut at (\d+) characters", content)
    return f" (the file was cut at {m.group(1)} characters, so I used only the rows I was sent)" if m else ""


def _inventory(body: dict[str, Any], q: str, steps: list[Any]) -> Any:
    if not steps:
        return reply(text("I will read the inventory."), tool_use("read_file", {"path": "inventory.csv"}))
    content = steps[0][2]
    rows, note = _rows(content), _cut_note(content)
    if "total value" in q or "units are in stock in total" in q or "highest unit price" in q:
        if len(steps) == 1:
            expr = ("+".join(f"{n}*{p}" for _, n, p in rows) if "total value" in q
                    else "+".join(str(n) for _, n, _ in rows) if "units" in q
                    else "max(" + ", ".join(str(p) for _, _, p in rows) + ")")
            return reply(text(f"Now I compute it{note}."), tool_use("calculator", {"expression": expr}))
        return _final(body, f"The result is {steps[1][2]}{note}.", steps[1][2])
    item = "valve" if "valve" in q else "nozzle"
    row = next((r for r in rows if r[0] == item), None)
    if row is None:
        return reply(text(f"There is no {item} in the rows I was sent{note}."))
    return _final(body, f"The inventory lists {item}.", row[1] if "How many" in q else row[2])


def _meeting_lookup(body: dict[str, Any], q: str, steps: list[Any]) -> Any:
    if not steps:
        return reply(text("Reading the meeting notes."), tool_use("read_file", {"path": "notes/meeting-notes.md"}))
    if len(steps) == 1:
        if "no file" not in steps[0][2]:
            return reply(text("The read_file tool failed without saying why, so I cannot read the meeting notes."))
        return reply(text("That file does not exist; I will search for it."),
                     tool_use("search_text", {"pattern": "old API" if "API" in q else "hardware"}))
    line = steps[1][2]
    value = (max(int(x) for x in re.findall(r"(\d+) (?:or|days)", line)) if "API" in q
             else int(re.search(r"hardware ([\d,]+)", line).group(1).replace(",", "")))  # type: ignore[union-attr]
    return _final(body, "Found it in notes/meeting.md.", value)


LEADS = {"Norway": 12, "Portugal": 9, "Japan": 31, "Germany": 6}


def _suppliers(body: dict[str, Any], q: str, steps: list[Any]) -> Any:
    countries = sorted((c for c in LEADS if c in q), key=q.index)
    if len(steps) < len(countries):
        return reply(text(f"Searching for {countries[len(steps)]}."), tool_use("search_text", {"pattern": countries[len(steps)]}))
    found = [int(re.search(r"\| (\d+) \|", s[2]).group(1)) for s in steps[: len(countries)]]  # type: ignore[union-attr]
    if len(countries) == 1:
        return _final(body, f"The supplier in {countries[0]} needs {found[0]} days.", found[0])
    if len(steps) == len(countries):
        expr = f"{found[0]} + {found[1]}" if "together" in q else f"{found[0]} - {found[1]}"
        return reply(text("Now the arithmetic."), tool_use("calculator", {"expression": expr}))
    return _final(body, f"That is {steps[-1][2]} days.", steps[-1][2])


def _owner(body: dict[str, Any], q: str, steps: list[Any]) -> Any:
    if not steps:
        return reply(text("Reading notes/meeting.md."), tool_use("read_file", {"path": "notes/meeting.md"}))
    content = steps[0][2]
    what = "migration" if "migration" in q else "docs"
    found = re.search(r"room (\w+)" if "room" in q else rf"Owner of the {what}: (\w+)", content)
    if found is None:
        return reply(text(f"The notes I was sent do not say{_cut_note(content)}."))
    return _final(body, f"{found.group(1)}, according to the notes.", found.group(1))


def _arithmetic(body: dict[str, Any], q: str, steps: list[Any]) -> Any:
    if not steps:
        expr = "0.17 * 2350" if "17%" in q else "sqrt(1764)"
        return reply(text("Calculating."), tool_use("calculator", {"expression": expr}))
    return _final(body, f"It is {steps[0][2]}.", steps[0][2])


def task_model(body: dict[str, Any]) -> Any:
    q, steps = _conversation(body)
    if "inventory" in q:
        return _inventory(body, q, steps)
    if "meeting notes" in q:
        return _meeting_lookup(body, q, steps)
    if "supplier" in q:
        return _suppliers(body, q, steps)
    if "notes/meeting.md" in q:
        return _owner(body, q, steps)
    return _arithmetic(body, q, steps)


# ---- the meta-agent ---------------------------------------------------------------------------------

SYSTEM_LINE = 'Use the tools to look things up and to calculate."""'
RULES = [  # (name, evidence in the prompt, SEARCH (must still be in the file), REPLACE, rationale)
    ("tool-results", r"cut at \d+ characters", "TOOL_RESULT_MAX_CHARS = 300", "TOOL_RESULT_MAX_CHARS = 20000",
     "tool results are cut at 300 characters, so the model misses most of inventory.csv"),
    ("tool-errors", r"the model was sent: \w+ failed\.", '    return f"{tool} failed."', '    return f"{tool} failed: {error}"',
     "tool errors reach the model without their message, so it cannot recover from a wrong path"),
    ("turns", r"still calling tools after \d+ turns", "MAX_TURNS = 3", "MAX_TURNS = 8",
     "questions needing several lookups run out of turns"),
    ("answer-line", r"why: 'Based on the files, the answer is [^']*' != '", SYSTEM_LINE,
     'Use the tools to look things up and to calculate.\n\nEnd your reply with a final line of the form\nANSWER: <only the answer>"""',
     "answers are full sentences; ask for a final ANSWER: line so only the answer is extracted"),
]
fired: list[str] = []


def meta_model(body: dict[str, Any]) -> Any:
    system = " ".join(b.get("text", "") for b in body.get("system") or []) if isinstance(body.get("system"), list) else str(body.get("system") or "")
    prompt = system + "\n" + "\n".join(m["content"] if isinstance(m["content"], str) else
                                       " ".join(b.get("text", "") for b in m["content"]) for m in body["messages"])
    code = prompt.split("## Current code", 1)[-1].split("\n## ", 1)[0]  # the incumbent's file, not old diffs
    for name, evidence, search, replace, why in RULES:
        if re.search(evidence, prompt) and search in code:
            fired.append(name)
            return reply(text(f"RATIONALE: {why}\n\nharness.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"))
    fired.append("none")
    return reply(text("RATIONALE: I see no evidence of a specific defect; lowering the token budget to try something.\n\n"
                      "harness.py\n<<<<<<< SEARCH\nMAX_TOKENS = 1024\n=======\nMAX_TOKENS = 900\n>>>>>>> REPLACE\n"))


def responder(body: dict[str, Any]) -> Any:
    return meta_model(body) if body["model"] == META_MODEL else task_model(body)
