"""Render a Trajectory as a readable conversation (`tracekit traces show ID --transcript`)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from .._util.termtext import json_text
from .._util.termtext import markup as escape  # every message is hostile text: control characters made visible, markup escaped
from ..trajectories._trajectory import Step, ToolCall, Trajectory
from ._common import short

MAX_MESSAGE_CHARS = 4000


def _tokens(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _money(usd: float | None) -> str:
    return "" if usd is None else f"${usd:.6f}" if usd < 0.01 else f"${usd:.4f}"


def _block(text: str, style: str = "") -> str:
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + f"… [+{len(text) - MAX_MESSAGE_CHARS} chars]"
    body = escape(text)
    lines = ["  " + line for line in body.splitlines()] or ["  "]
    out = "\n".join(lines)
    return f"[{style}]{out}[/{style}]" if style else out


def _value(value: Any, width: int) -> str:
    if isinstance(value, str):
        return escape(short(value, width))
    return escape(short(json.dumps(value, ensure_ascii=False), width))


def _tool_line(c: ToolCall, width: int) -> str:
    dur = f" [dim]{c.duration_ms:.1f} ms[/dim]" if c.duration_ms is not None else ""
    if c.status == "error":
        head = f"  [red]✗ {escape(c.name)}[/red]({_value(c.arguments, width)}){dur}"
        return head + f"\n    [red]↳ error: {_value(c.error or c.result, width)}[/red]"
    head = f"  [cyan]▸ {escape(c.name)}[/cyan]({_value(c.arguments, width)}){dur}"
    if c.status == "unknown" and c.result is None:
        return head + "\n    [dim]↳ (no result recorded)[/dim]"
    return head + f"\n    [green]↳[/green] {_value(c.result, width)}"


def _agent_header(s: Step) -> str:
    bits = ["[bold magenta]assistant[/bold magenta]"]
    if s.model:
        bits.append(escape(s.model))
    if s.input_tokens is not None or s.output_tokens is not None:
        cached = f" ({_tokens(s.cache_read_tokens)} cached)" if s.cache_read_tokens else ""
        bits.append(f"{_tokens(s.input_tokens)} in{cached} / {_tokens(s.output_tokens)} out tokens")
    if s.cost_usd is not None:
        bits.append(_money(s.cost_usd))
    if s.latency_ms is not None:
        bits.append(f"{s.latency_ms:,.0f} ms")
    if s.stop_reason:
        bits.append(f"stop: {escape(s.stop_reason)}")
    return " · ".join(bits)


def render(t: Trajectory, out: Console, width: int = 100) -> None:
    """Print the conversation; lines are not hard-wrapped (pipes and grep see whole lines)."""
    def emit_line(text: str = "") -> None:
        out.print(text, soft_wrap=True)

    calls = t.llm_call_count
    dur = f" · {t.duration_ms / 1000:.2f} s" if t.duration_ms is not None else ""
    status = "[red]error[/red]" if t.status == "error" else "[green]ok[/green]"
    emit_line(f"[bold]trace {escape(t.trace_id)}[/bold] {escape(t.name or '')} · {status} · {calls} LLM call"
                  f"{'s' if calls != 1 else ''} · {len(t.tool_calls)} tool call{'s' if len(t.tool_calls) != 1 else ''}{dur}")
    for s in t.steps:
        emit_line()
        if s.source == "system":
            emit_line("[bold yellow]system[/bold yellow]")
            emit_line(_block(s.message, "dim"))
        elif s.source == "user":
            emit_line("[bold blue]user[/bold blue]")
            emit_line(_block(s.message))
        else:
            emit_line(_agent_header(s))
            if s.reasoning:
                emit_line(_block("thinking: " + s.reasoning, "dim italic"))
            if s.message:
                emit_line(_block(s.message))
            for c in s.tool_calls:
                emit_line(_tool_line(c, width))
            if s.error:
                emit_line(f"  [red]error: {escape(s.error)}[/red]")
    emit_line()
    cached = f" ({t.cache_read_tokens:,} cached)" if t.cache_read_tokens else ""
    cost = f" · {_money(t.total_cost_usd)}" if t.total_cost_usd is not None else ""
    emit_line(f"[bold]total[/bold]: {calls} LLM call{'s' if calls != 1 else ''} · {t.input_tokens:,} in{cached} / "
                  f"{t.output_tokens:,} out tokens{cost}{dur}")


def show(trace_id: str, *, home: Any, width: int, fmt: str) -> None:
    """The body of `tracekit traces show ID --transcript`."""
    from ..trajectories._trajectory import trajectory
    from ._common import console, emit

    t = trajectory(trace_id, home=home)
    if fmt == "json":
        emit(json_text(t.to_dict(), default=str))
        return
    render(t, console, width)
