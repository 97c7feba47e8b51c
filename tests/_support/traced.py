"""A tiny traced agent for tests of SQL over spans: an `agent` span over `tool` spans, negative inputs raising.

`agent([1, -1, 2])` stores one trace of 4 spans (the agent and three tool calls, one of them an error).
"""

from __future__ import annotations

import tracekit


@tracekit.trace(kind="tool")
def tool(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x


@tracekit.trace(kind="agent")
def agent(xs: list[int]) -> int:
    total = 0
    for x in xs:
        try:
            total += tool(x)
        except ValueError:
            pass
    return total
