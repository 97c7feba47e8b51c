"""The proposer seam: `propose(context) -> Proposal` (the registry of built-in ones is `_proposers`).

A proposer sees one `ProposalContext` (the parent's files, the ledger so far, the rendered prompt,
a read-only folder with everything in full) and returns the edit with a short rationale and its
cost. It never runs the candidate or computes the metric: the loop owns that.

    class MyProposer:
        name = "mine"
        def propose(self, ctx: ProposalContext) -> Proposal:
            new = ctx.files["train.py"].replace("LR = 1e-3", "LR = 2e-3")
            return Proposal(files={"train.py": new}, rationale="double the learning rate")

    PROPOSERS["mine"] = lambda target, options: MyProposer()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import OptimizerError

if TYPE_CHECKING:
    from ..store._tables import ExperimentRow
    from ._target import Target


class ProposerExhausted(OptimizerError):
    """The proposer has nothing new to propose (e.g. the search proposer tried every move); the loop stops."""


@dataclass
class Cost:
    """What a proposal cost: tokens (uncached in, out, cache read/write) and USD (None = unknown)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    usd: float | None = 0.0

    def __add__(self, other: "Cost") -> "Cost":
        usd = None if self.usd is None or other.usd is None else self.usd + other.usd
        return Cost(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out,
                    self.cache_read + other.cache_read, self.cache_write + other.cache_write, usd)


@dataclass
class Proposal:
    """An edit: `text` (SEARCH/REPLACE or FILE blocks, parsed by the loop) or `files` (new contents)."""

    text: str | None = None
    files: dict[str, str] | None = None
    rationale: str = ""
    cost: Cost = field(default_factory=Cost)
    raw_output: str = ""
    model: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProposalContext:
    """Everything a proposer may use for one proposal."""

    target: "Target"
    run_id: str
    experiment_id: str
    parent_id: str
    parent_commit: str
    parent_metric: float | None
    files: dict[str, str]  # the parent's editable files
    history: list[ExperimentRow]  # ledger rows of this run, oldest first (no prompts)
    system: str  # the stable part of the prompt (rules, program, output format)
    prompt: str  # the per-experiment part (task card, file, history, trace sections)
    context_dir: Path  # read-only folder with everything in full (for agents that browse)
    scratch: Path  # an empty folder the proposer may use
    feedback: str = "traces"
    noise: float | None = None
    threshold: float = 0.0
    pending: list[dict[str, Any]] = field(default_factory=list)  # experiments in flight: diff, content_hash
    known_hashes: set[str] = field(default_factory=set)  # content hashes already tried
    repair: str | None = None  # why the previous attempt was invalid (one repair attempt)
    previous: Proposal | None = None
    seed: int = 0

    @property
    def full_prompt(self) -> str:
        return self.system + "\n\n" + self.prompt


@runtime_checkable
class Proposer(Protocol):
    """Returns one candidate edit per call; may raise OptimizerError when it cannot propose at all."""

    name: str

    def propose(self, ctx: ProposalContext) -> Proposal: ...
