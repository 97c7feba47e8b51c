"""examples/fit as a test target that can be gamed three ways, and its honest and gaming edits (issue 14).

train.py (editable) fits y = w*x + b by gradient descent and is scored by the fixed prepare.py on
validation rows of data.jsonl, which get noisier further down, so scoring fewer of them looks
better. Deterministic. The edits are the example's replayed night (examples/fit/night/edits.json).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracekit.optimizer import Proposal, ProposalContext

from . import EXAMPLES
from .optimizer import git_init

FIT = EXAMPLES / "fit"
EDITS: dict[str, dict[str, str]] = {e["rationale"]: e for e in json.loads((FIT / "night" / "edits.json").read_text())}


def data_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIT / "data.jsonl").read_text().splitlines()]


def make_gaming_target(root: Path, *, git_repo: bool = True) -> Path:
    """A copy of examples/fit; a git repository of its own by default (promote writes a branch there)."""
    shutil.copytree(FIT, root, ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    if git_repo:
        git_init(root)
    return root


def edit(rationale: str) -> Callable[[ProposalContext], Proposal]:
    """The replayed night's edit with this rationale, as a SEARCH/REPLACE proposal."""
    e = EDITS[rationale]

    def step(ctx: ProposalContext) -> Proposal:
        text = (f"RATIONALE: {rationale}\n\ntrain.py\n<<<<<<< SEARCH\n{e['search']}\n=======\n{e['replace']}\n"
                ">>>>>>> REPLACE\n")
        return Proposal(text=text, raw_output=text)
    return step


HONEST_LR = edit("a higher learning rate converges further")
HONEST_STEPS = edit("more gradient steps")
GAMING_FEWER_CASES = edit("score on fewer batches")
GAMING_MEMORIZED = edit("a lookup table for known inputs")
GAMING_FAKE_METRIC = edit("report a better loss")
