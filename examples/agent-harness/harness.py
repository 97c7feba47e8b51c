"""The harness of the task agent: what the model is told and how the loop behaves.

This is the EDITABLE file (the meta-agent rewrites it); `agent.py` holds the fixed parts: the
tools' implementations, the API calls and the tracing. Keep the names below (the agent reads them)
and keep every tool that `agent.py` implements described here. It starts as a rough first draft.

    SYSTEM_PROMPT            the system prompt
    TOOLS                    name -> description and JSON-Schema input, sent to the model
    MAX_TURNS, MAX_TOKENS    the turn policy: model calls per question, tokens per answer
    TOOL_RESULT_MAX_CHARS    longer tool results are cut before the model sees them
    format_tool_error()      what the model sees when a tool fails
    extract_answer()         the final answer taken from the model's last text
"""

from __future__ import annotations

SYSTEM_PROMPT = """You are an assistant that answers questions about a small workspace of files.
Use the tools to look things up and to calculate."""

TOOLS: dict[str, dict[str, object]] = {
    "calculator": {
        "description": "Evaluate an arithmetic expression (+ - * / // % **, parentheses, and the functions "
                       "abs, round, min, max, sqrt). Returns the result as a number.",
        "input_schema": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "For example: (12 * 2.5) + 3"}},
            "required": ["expression"],
        },
    },
    "list_files": {
        "description": "List the files in a directory of the workspace (recursively), one path per line.",
        "input_schema": {
            "type": "object",
            "properties": {"directory": {"type": "string", "description": "Relative to the workspace; default '.'"}},
        },
    },
    "read_file": {
        "description": "Read a text file of the workspace. Returns its content.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Relative to the workspace, e.g. notes/meeting.md"}},
            "required": ["path"],
        },
    },
    "search_text": {
        "description": "Search the workspace's files for a regular expression; returns matching lines as path:line: text.",
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "directory": {"type": "string"}},
            "required": ["pattern"],
        },
    },
}

MAX_TURNS = 3
MAX_TOKENS = 1024
TOOL_RESULT_MAX_CHARS = 300


def format_tool_error(tool: str, error: Exception) -> str:
    """The tool_result text the model gets when `tool` raised `error` (sent with is_error=true)."""
    return f"{tool} failed."


def extract_answer(text: str) -> str:
    """The answer in the model's final text: what follows the last 'ANSWER:', else the whole text."""
    marker = "ANSWER:"
    if marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text.strip()
