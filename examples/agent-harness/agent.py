"""A small tool-using agent on the anthropic SDK, traced with tracekit.

    export ANTHROPIC_API_KEY=...            # runs against Claude
    python examples/agent/agent.py "How much is the inventory in inventory.csv worth?"
    tracekit traces show <printed trace id> --transcript

    python examples/agent/agent.py --base-url http://127.0.0.1:8765 "..."   # any Messages API server

This file is the FIXED part of the agent: tools, the model loop, tracing. What the model is told
and the turn policy live in `harness.py` (the editable part). Each question is one trace: an
`agent` span (this module's `run`), an `llm` span per model call (`tracekit.instrument_anthropic`)
and a `tool` span per tool call (the `@tracekit.trace(kind="tool")` functions below).

`examples/agent-harness/agent.py` is a verbatim copy of this file: an optimization target has to
be self-contained (that folder's README says why). Edit this one and copy it over; a test checks.
"""

from __future__ import annotations

import argparse
import ast
import math
import operator
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import anthropic  # noqa: E402

import harness  # noqa: E402
import tracekit  # noqa: E402

DEFAULT_MODEL = os.environ.get("TRACEKIT_AGENT_MODEL", "claude-haiku-4-5")
DEFAULT_WORKSPACE = HERE / "workspace"
MAX_FILE_BYTES = 100_000


class ToolError(Exception):
    """A tool could not do what was asked (the model sees the message)."""


# ---- tools ---------------------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCS = {"abs": abs, "round": round, "min": min, "max": max, "sqrt": math.sqrt}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("exponent too large (at most 100)")
        return _BINOPS[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*[_eval(a) for a in node.args])  # type: ignore[no-any-return]
    raise ToolError(f"unsupported expression element: {ast.dump(node)[:60]}")


@tracekit.trace(kind="tool", name="calculator")
def calculator(expression: str) -> float:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None
    try:
        result = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    return int(result) if isinstance(result, float) and result.is_integer() else result


def _inside(workspace: Path, relative: str) -> Path:
    path = (workspace / relative).resolve()
    if path != workspace and workspace not in path.parents:
        raise ToolError(f"{relative!r} is outside the workspace")
    return path


@tracekit.trace(kind="tool", name="list_files")
def list_files(workspace: Path, directory: str = ".") -> str:
    root = _inside(workspace, directory)
    if not root.is_dir():
        raise ToolError(f"no directory {directory!r} in the workspace")
    return "\n".join(str(p.relative_to(workspace)) for p in sorted(root.rglob("*")) if p.is_file())


@tracekit.trace(kind="tool", name="read_file")
def read_file(workspace: Path, path: str) -> str:
    target = _inside(workspace, path)
    if not target.is_file():
        raise ToolError(f"no file {path!r} in the workspace (use list_files)")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"{path!r} is larger than {MAX_FILE_BYTES} bytes")
    return target.read_text(errors="replace")


@tracekit.trace(kind="tool", name="search_text")
def search_text(workspace: Path, pattern: str, directory: str = ".") -> str:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"bad regular expression: {exc}") from None
    hits = []
    for file in sorted(_inside(workspace, directory).rglob("*")):
        if file.is_file() and file.stat().st_size <= MAX_FILE_BYTES:
            for n, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{file.relative_to(workspace)}:{n}: {line}")
    return "\n".join(hits[:50]) or "no matches"


def run_tool(name: str, args: dict[str, Any], workspace: Path) -> str:
    if name == "calculator":
        return str(calculator(**args))
    if name == "list_files":
        return list_files(workspace, **args)
    if name == "read_file":
        return read_file(workspace, **args)
    if name == "search_text":
        return search_text(workspace, **args)
    raise ToolError(f"unknown tool {name!r}; the tools are: {', '.join(harness.TOOLS)}")


# ---- the loop ------------------------------------------------------------------------------------


@dataclass
class AgentResult:
    answer: str
    text: str
    turns: int
    stop_reason: str | None
    tool_calls: int
    trace_id: str | None


def tool_specs() -> list[dict[str, Any]]:
    return [{"name": name, **spec} for name, spec in harness.TOOLS.items()]


@tracekit.trace(kind="agent", name="example_agent")
def run(question: str, *, client: anthropic.Anthropic | None = None, model: str | None = None,
        workspace: str | Path = DEFAULT_WORKSPACE) -> AgentResult:
    """Answer `question` with the tools; one trace per call."""
    client = client or anthropic.Anthropic()
    tracekit.instrument_anthropic(client)
    ws = Path(workspace).resolve()
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    text, stop, calls, turns = "", None, 0, 0
    for turns in range(1, harness.MAX_TURNS + 1):
        response = client.messages.create(model=model or DEFAULT_MODEL, max_tokens=harness.MAX_TOKENS,
                                          system=harness.SYSTEM_PROMPT, tools=tool_specs(), messages=messages)
        stop = response.stop_reason
        text = "".join(b.text for b in response.content if b.type == "text")
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in response.content]})
        uses = [b for b in response.content if b.type == "tool_use"]
        if stop != "tool_use" or not uses:
            break
        results = []
        for block in uses:
            calls += 1
            try:
                output, is_error = run_tool(block.name, dict(block.input), ws), False
            except (ToolError, TypeError, OSError) as exc:
                output, is_error = harness.format_tool_error(block.name, exc), True
            if len(output) > harness.TOOL_RESULT_MAX_CHARS:
                output = output[: harness.TOOL_RESULT_MAX_CHARS] + f"\n[... cut at {harness.TOOL_RESULT_MAX_CHARS} characters]"
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": output, "is_error": is_error})
        messages.append({"role": "user", "content": results})
    return AgentResult(harness.extract_answer(text), text, turns, stop, calls, tracekit.current_trace_id())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A small tool-using agent, traced with tracekit.")
    parser.add_argument("question")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--workspace", default=str(DEFAULT_WORKSPACE))
    parser.add_argument("--base-url", default=None, help="a Messages API server other than Anthropic's")
    args = parser.parse_args(argv)
    if not os.environ.get("ANTHROPIC_API_KEY") and not args.base_url:
        print("error: set ANTHROPIC_API_KEY to run against Claude (or pass --base-url for another "
              "Messages API server)", file=sys.stderr)
        return 2
    client = anthropic.Anthropic(base_url=args.base_url, api_key=os.environ.get("ANTHROPIC_API_KEY") or "unused") \
        if args.base_url else anthropic.Anthropic()
    result = run(args.question, client=client, model=args.model, workspace=args.workspace)
    tracekit.flush()
    print(result.text)
    print(f"answer: {result.answer}")
    print(f"turns: {result.turns}")
    print(f"tool_calls: {result.tool_calls}")
    print(f"trace_id: {result.trace_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
