"""A store filled by real runs, for the web UI's tests, its benchmark's sanity check and docs screenshots.

    python -m tests._support.ui_store HOME        # from the repository root; prints a JSON summary

In its own process (tracekit's configuration is per process): an instrumented agent against the local
Messages API server (system prompt, thinking, a tool call and its result, streamed and not), one
trace whose span text is an HTML/JS payload, an optimizer run of the bowl target with a scripted
proposer (baseline, keep, discard, crash, invalid, timeout), and two eval runs of one task where
the second regresses case `c2`. Every payload is in `PAYLOAD`; the tests assert it shows as text.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Text that would run script, load an image or break out of a block if a page used it as markup.
PAYLOAD = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b class="pwned">bold?</b>'

AGENT_MODEL = "claude-ui-test"
SYSTEM = "You are a careful calculator agent."


def _agent_traces(home: Path) -> dict[str, Any]:
    import anthropic

    import tracekit

    from .messages_server import MessagesServer, reply, text, thinking, tool_use

    def respond(body: dict[str, Any]) -> Any:
        last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if isinstance(last, str):
            expr = last.removeprefix("Compute: ")
            return reply(thinking(f"I should use the calculator for {expr}."), text("Let me use the calculator."),
                         tool_use("calculator", {"expression": expr}),
                         usage={"input_tokens": 120, "output_tokens": 30, "cache_read_input_tokens": 100})
        result = next(b for b in last if b["type"] == "tool_result")
        return reply(text(f"The result is {result['content']}."), usage={"input_tokens": 180, "output_tokens": 12})

    @tracekit.trace(kind="tool", name="calculator")
    def calculator(expression: str) -> str:
        a, op, b = expression.split()
        return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])

    tracekit.set_model_prices({AGENT_MODEL: {"input": 3.0, "output": 15.0, "cache_read": 0.3}})  # recorded on each call's span
    tracekit.instrument_anthropic()
    ids: dict[str, Any] = {}
    with MessagesServer() as server:
        server.responder = respond
        client = anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)

        @tracekit.trace(kind="agent", name="calc_agent")
        def agent(question: str, stream: bool = False) -> str:
            messages: list[dict[str, Any]] = [{"role": "user", "content": f"Compute: {question}"}]
            tools = [{"name": "calculator", "description": "Evaluate 'a op b'.",
                      "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}}}]
            for _ in range(3):
                if stream:
                    with client.messages.stream(model=AGENT_MODEL, max_tokens=256, system=SYSTEM, messages=messages, tools=tools) as s:
                        msg = s.get_final_message()
                else:
                    msg = client.messages.create(model=AGENT_MODEL, max_tokens=256, system=SYSTEM, messages=messages, tools=tools)
                if msg.stop_reason != "tool_use":
                    return "".join(b.text for b in msg.content if b.type == "text")
                messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
                results = [{"type": "tool_result", "tool_use_id": b.id, "content": calculator(**b.input)}
                           for b in msg.content if b.type == "tool_use"]
                messages.append({"role": "user", "content": results})
            raise RuntimeError("too many turns")

        agent("6 * 7")
        agent("2 + 3", stream=True)

    @tracekit.trace(kind="agent", name="hostile " + PAYLOAD)
    def hostile(note: str) -> str:
        with tracekit.span("inner " + PAYLOAD, kind="tool"):
            pass
        raise ValueError(PAYLOAD)

    try:
        hostile(PAYLOAD)
    except ValueError:
        pass
    tracekit.uninstrument_anthropic()
    tracekit.flush()
    rows = tracekit.query("SELECT name, trace_id FROM traces ORDER BY start_time", home=home).fetchall()
    ids["agent_trace"] = next(t for n, t in rows if n == "calc_agent")
    ids["hostile_trace"] = next(t for n, t in rows if n.startswith("hostile"))
    return ids


def _optimizer_run(home: Path, work: Path) -> dict[str, Any]:
    from tracekit.optimizer import Proposal

    from .optimizer import ScriptedProposer, make_target, optimize, replace_line

    root = make_target(work / "bowl", budget=4)
    toml = root / "tracekit.toml"
    toml.write_text(toml.read_text() + "min_delta = 0.1\n")  # [noise] is the file's last table: a keep must gain 0.1
    script = ScriptedProposer([
        replace_line("WIDTH = 8  # model width", "WIDTH = 32  # model width", "widen the model " + PAYLOAD),  # keep
        replace_line('MODE = "a"  # one of "a", "b" or "c"', 'MODE = "c"  # one of "a", "b" or "c"', "try mode c"),  # discard: worse
        replace_line("LR = 0.1  # learning rate", "LR = 0.12  # learning rate", "nudge the learning rate"),  # discard: near miss
        replace_line('MODE = "a"  # one of "a", "b" or "c"', 'MODE = "z"', "try mode z"),  # crash
        lambda ctx: Proposal(files={"prepare.py": "x = 1\n"}, rationale="edit a fixed file"),  # invalid
        replace_line("LR = 0.1  # learning rate", "LR = 0.4  # learning rate", "raise the learning rate"),  # keep
    ])
    s = optimize(root, proposer=script, iterations=6, home=home)
    return {"run_id": s.rows[0]["run_id"], "experiments": len(s.rows), "statuses": [r["status"] for r in s.rows]}


def _evals(home: Path) -> dict[str, Any]:
    from tracekit.evals import Sample, Task, run_eval, scorers

    answers = {"c1": "1", "c2": "2", "c3": "3", "c4": "x"}
    task = Task([Sample(k, str(i + 1), id=k) for i, k in enumerate(answers)], solver=lambda k: answers[k],
                scorers=[scorers.exact()], name="lookup")
    a = run_eval(task)
    answers.update({"c2": PAYLOAD, "c4": "4"})
    b = run_eval(task)
    return {"eval_a": a.run_id, "eval_b": b.run_id, "regressed": "c2", "fixed": "c4"}


def build(home: Path, work: Path) -> dict[str, Any]:
    import tracekit

    os.environ["TRACEKIT_HOME"] = str(home)
    os.environ["TRACEKIT_PROJECT"] = "ui-test"
    tracekit.configure(home=home, project="ui-test")
    out = _agent_traces(home)
    out.update(_optimizer_run(home, work))
    out.update(_evals(home))
    tracekit.flush()
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    print(json.dumps(build(target, target.parent / (target.name + "-work"))))
