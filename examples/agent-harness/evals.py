"""The eval suite of the agent-harness target: the metric. FIXED: the meta-agent may not edit it.

    tracekit eval run evals.py --split train --split val     # what every experiment runs
    tracekit optimize holdout .                               # the sealed test split, at review time

The train and val cases are in cases.jsonl; the test cases are in holdout.jsonl, the sealed split
([holdout] in tracekit.toml): it is never copied into an optimization run, so there the suite has
train and val only, and `tracekit optimize holdout` puts it back to score `--split test`. Each case asks the task agent (agent.py with the current harness.py) a question about the files in
workspace/ whose answer is checkable: numbers within 0.01, names exactly (case-insensitive). The
agent reaches the model through ANTHROPIC_BASE_URL (the model proxy on the host; see README.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anthropic

import agent
from tracekit.evals import Dataset, Sample, Task, scorers

HERE = Path(__file__).resolve().parent
MODEL = os.environ.get("TRACEKIT_AGENT_MODEL", agent.DEFAULT_MODEL)
_clients: list[anthropic.Anthropic] = []


def client() -> anthropic.Anthropic:
    if not _clients:
        _clients.append(anthropic.Anthropic(max_retries=4))  # base URL and key from the environment
    return _clients[0]


def solve(question: str) -> str:
    result = agent.run(question, client=client(), model=MODEL, workspace=HERE / "workspace")
    if result.stop_reason == "tool_use":
        return f"(no answer: the agent was still calling tools after {result.turns} turns)"
    return result.answer


_numeric = scorers.numeric(abs_tol=0.01)
_exact = scorers.exact(ignore_case=True)


def correct(output: str, sample: Sample) -> Any:
    number = isinstance(sample.target, (int, float)) and not isinstance(sample.target, bool)
    return (_numeric if number else _exact)(output, sample)


def cases() -> Dataset:
    """cases.jsonl, plus the sealed holdout.jsonl where it is present (never inside an optimization run)."""
    found = Dataset.load(HERE / "cases.jsonl")
    if (HERE / "holdout.jsonl").is_file():
        found = Dataset([*found, *Dataset.load(HERE / "holdout.jsonl")], name="cases")
    return found


suite = Task(cases(), solver=solve, scorers=[scorers.python(correct)], name="workspace_qa",
             concurrency=4, time_limit=180, retries=2)
