"""The model the docs pages talk to: it answers as a model would on the bundled examples.

A page that runs `tracekit optimize --proposer anthropic` (or any page with ANTHROPIC_API_KEY set,
where the optimizer picks Claude by itself) must behave as it would for a reader with a key: edits
that can be kept, so the page's later `confirm`, `holdout`, `review` and SQL have a candidate.
- the agent-harness example's task agent (its requests carry the example's tools) and a meta-agent
  that edits its harness: tests/_support/harness_sim.py;
- a meta-agent for examples/tinylm: the edits the search proposer finds first (a higher learning
  rate, a smaller batch), each proposed once, in order;
- an echo of the last user message for anything else.
"""

from __future__ import annotations

from typing import Any

from .harness_sim import meta_model, task_model
from .messages_server import reply, text

TINYLM_EDITS = [  # (SEARCH, REPLACE, rationale)
    ("LEARNING_RATE = 1e-3", "LEARNING_RATE = 3e-3", "a short budget wants a higher peak learning rate"),
    ("BATCH_SIZE = 32", "BATCH_SIZE = 16", "smaller batches give more optimizer steps in the same time"),
    ("WARMUP_FRAC = 0.02", "WARMUP_FRAC = 0.05", "a longer warmup steadies the higher learning rate"),
]


def _prompt(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for m in body.get("messages") or []:
        content = m.get("content")
        parts.append(content if isinstance(content, str) else
                     " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict)))
    return "\n".join(parts)


def tinylm_model(prompt: str) -> Any:
    code = prompt.split("## Current code", 1)[-1].split("\n## ", 1)[0]
    for search, replace, why in TINYLM_EDITS:
        if search in code and replace not in prompt:  # not yet in the incumbent, not tried before
            return reply(text(f"RATIONALE: {why}\n\ntrain.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"))
    return reply(text("RATIONALE: nothing left I would try.\n"))


def docs_model(body: dict[str, Any]) -> Any:
    tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    if "read_file" in tools:
        return task_model(body)
    prompt = _prompt(body)
    if "## Current code" in prompt and "harness.py" in prompt:
        return meta_model(body)
    if "## Current code" in prompt and "LEARNING_RATE" in prompt:
        return tinylm_model(prompt)
    last = next((m for m in reversed(body.get("messages") or []) if m.get("role") == "user"), {})
    return reply(text("echo: " + _prompt({"messages": [last]})))
