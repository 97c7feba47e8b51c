"""Trajectories: what an agent did, step by step, read back from its trace.

    t = tracekit.trajectory(trace_id)         # steps: LLM calls, tool calls, messages, timings
    tracekit.export_atif(trace_id, "run.json")
    tracekit.import_atif("other-harness/trajectory.json")   # -> a new trace in the store

`_trajectory` builds them from the `llm_calls` and `tool_calls` views; `_atif` writes the Agent
Trajectory Interchange Format (v1.7); `_atif_import` validates ATIF documents and stores them as
spans. `tracekit traces show --transcript` prints one.
"""

from __future__ import annotations

from ._atif import export_atif, to_atif
from ._atif_import import import_atif
from ._trajectory import Step, Trajectory, trajectory

__all__ = ["Step", "Trajectory", "export_atif", "import_atif", "to_atif", "trajectory"]
