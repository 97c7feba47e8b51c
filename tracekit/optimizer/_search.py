"""The search proposer: no LLM, no network. A coordinate-wise evolution strategy over the tunables.

Every proposal changes one setting of the incumbent (see `_tunables`): floats are multiplied or
divided by a step factor (3, half a decade, the usual spacing of a learning-rate grid; fractions
near 1 move their distance to 1 the same way), integers by 2 (small ones by one), booleans flip,
categorical strings switch to a listed alternative. What to try is learned
from the ledger alone (so it resumes and works after any other proposer): the diff of every past
experiment says which settings moved which way and the outcome says how it went.

- an untried move scores 1 + prior (names that look like learning rates, batch sizes, widths and
  depths first: across autoresearch sessions those moved the metric most; directions are not
  assumed, the first direction is a seeded coin flip);
- a move whose opposite direction failed scores 2 + prior (try the other way), one that would undo
  a kept change 0.2;
- a move that won last time scores 3 + prior (keep going in that direction);
- failed moves drop to 0.3 (0.05 after a crash) and come back later with a smaller step: the factor
  is square-rooted each time a setting fails in both directions;
- every fourth proposal, two moves that improved without clearing the noise threshold are
  combined.

    proposer = SearchProposer(seed=0)
    proposal = proposer.propose(ctx)   # Proposal(files={"train.py": ...}, rationale="LEARNING_RATE 0.001 -> 0.002 ...")
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from .._errors import OptimizerError
from ..store._tables import ExperimentRow
from ._proposer import Cost, Proposal, ProposalContext, ProposerExhausted
from ._tunables import Tunable, Value, changes_from_diff, find_tunables, format_value, set_values
from ._validate import content_hash

PRIORS: list[tuple[str, float]] = [
    (r"(^|_)(LR|LEARNING_RATE)$", 1.0),
    (r"BATCH", 0.9),
    (r"(EMBD|EMBED|WIDTH|HIDDEN|D_MODEL|(^|_)DIM($|_))", 0.6),
    (r"(LAYER|DEPTH)", 0.6),
    (r"(WARMUP|SCHEDULE|MIN_LR|DECAY)", 0.4),
]
DEFAULT_PRIOR = 0.3


def prior(name: str) -> float:
    for pattern, weight in PRIORS:
        if re.search(pattern, name):
            return weight
    return DEFAULT_PRIOR


@dataclass(frozen=True)
class Move:
    path: str
    name: str
    old: Value
    new: Value
    direction: str  # "up" | "down" | "switch"
    score: float
    why: str

    def describe(self) -> str:
        return f"{self.name} {format_value(self.old)} -> {format_value(self.new)} ({self.why})"


def _sign(old: Value, new: Value) -> str:
    if isinstance(old, bool) or isinstance(old, str) or isinstance(new, (bool, str)):
        return f"={new}"
    return "up" if float(new) > float(old) else "down"


def _step(t: Tunable, value: Value, up: bool, factor: float) -> Value | None:
    if t.kind == "float":
        x = float(value)
        if x == 0:
            return None
        if 0 < x < 1 and x > 0.5:  # a fraction near 1 (betas, decay rates): move 1 - x geometrically
            y = (1 - x) / factor if up else (1 - x) * factor
            return None if y >= 1 else float(f"{1 - y:.6g}")
        new = x * factor if up else x / factor
        if 0 < x < 1 and new >= 1:
            return None
        return float(f"{new:.4g}")
    if t.kind == "int":
        x = int(value)
        if abs(x) >= 4:
            new = round(x * factor) if up else round(x / factor)
            if new == x:
                new = x + (1 if up else -1)
        else:
            new = x + (1 if up else -1)
        if x > 0 and new < 1:
            return None
        return new
    return None


class SearchProposer:
    """Coordinate-wise ES over the editable files' tunables, learning from the ledger."""

    name = "search"

    def __init__(self, seed: int = 0, factor: float = 3.0, int_factor: float = 2.0, combine_every: int = 4) -> None:
        self.seed = seed
        self.factor = factor
        self.int_factor = int_factor
        self.combine_every = combine_every

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "SearchProposer":
        return cls(seed=int(options.get("seed", 0)), factor=float(options.get("factor", 3.0)),
                   int_factor=float(options.get("int_factor", 2.0)), combine_every=int(options.get("combine_every", 4)))

    # -- learning from the ledger ----------------------------------------------------------------

    @staticmethod
    def outcomes(history: list[ExperimentRow]) -> dict[tuple[str, str], list[tuple[str, float]]]:
        """(setting, direction) -> [(outcome, improvement)] in ledger order; outcome win|weak|loss|fail."""
        out: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for r in history:
            status, diff = r.get("status"), r.get("diff")
            if status not in ("keep", "discard", "crash", "timeout") or not diff:
                continue
            imp = r.get("improvement")
            imp = float(imp) if imp is not None and math.isfinite(imp) else 0.0
            if status == "keep":
                outcome = "win"
            elif status == "discard":
                outcome = "weak" if imp > 0 else "loss"
            else:
                outcome = "fail"
            for name, (old, new) in changes_from_diff(diff).items():
                out.setdefault((name, _sign(old, new)), []).append((outcome, imp))
        return out

    def moves(self, ctx: ProposalContext, rng: random.Random) -> list[Move]:
        stats = self.outcomes(ctx.history)
        failures: dict[str, int] = {}
        for (name, _), outs in stats.items():
            failures[name] = failures.get(name, 0) + sum(1 for o, _ in outs if o in ("loss", "fail"))
        moves: list[Move] = []
        for path in ctx.target.editable:
            if not path.endswith(".py") or path not in ctx.files:
                continue
            for t in find_tunables(ctx.files[path]):
                p = prior(t.name)
                start = self.factor if t.kind == "float" else self.int_factor
                factor = start ** (0.5 ** (failures.get(t.name, 0) // 2))
                if t.kind in ("int", "float"):
                    options = [(d, _step(t, t.value, d == "up", factor)) for d in ("up", "down")]
                elif t.kind == "bool":
                    options = [(f"={not t.value}", not t.value)]
                else:
                    options = [(f"={c}", c) for c in t.choices if c != t.value]
                for direction, new in options:
                    if new is None or new == t.value:
                        continue
                    mine = stats.get((t.name, direction), [])
                    opposite = "down" if direction == "up" else "up" if direction == "down" else None
                    theirs = stats.get((t.name, opposite), []) if opposite else []
                    last = mine[-1][0] if mine else None
                    if last == "win":
                        score, why = 3 + p, "continues a kept change"
                    elif last is None:
                        if any(o == "win" for o, _ in theirs):
                            score, why = 0.2, "would undo a kept change"
                        elif theirs and theirs[-1][0] in ("loss", "fail", "weak"):
                            score, why = 2 + p, "the other direction did not help"
                        else:
                            score, why = 1 + p, "untried"
                    elif last == "weak":
                        score, why = 0.6 + p / 10, f"improved {mine[-1][1]:+.3g} before, below the noise threshold"
                    elif last == "loss":
                        score, why = 0.3 + p / 10, "did not help before; smaller step" if factor < start else "did not help before"
                    else:
                        score, why = 0.05, "crashed before"
                    score += rng.random() * 1e-3  # seeded tie-break
                    moves.append(Move(path, t.name, t.value, new, direction, score, why))
        return sorted(moves, key=lambda m: -m.score)

    # -- proposing ---------------------------------------------------------------------------------

    def propose(self, ctx: ProposalContext) -> Proposal:
        rng = random.Random(f"{self.seed}:{len(ctx.history)}:{len(ctx.pending)}:{ctx.repair is not None}")
        moves = self.moves(ctx, rng)
        if not moves:
            raise OptimizerError(
                f"the search proposer found no tunable settings in {', '.join(ctx.target.editable)}: it changes module-level "
                "UPPERCASE constants with number, bool or quoted-choice values (mark them with '# --- tunable ---' / "
                "'# --- end tunable ---'); use --proposer anthropic or command for free-form edits"
            )
        taken = set(ctx.known_hashes) | {p.get("content_hash") for p in ctx.pending}
        plans: list[list[Move]] = []
        weak = [m for m in moves if m.why.startswith("improved")]
        n_tried = sum(1 for r in ctx.history if r.get("status") not in ("baseline", "invalid"))
        if len(weak) >= 2 and self.combine_every and n_tried % self.combine_every == self.combine_every - 1:
            a, b = weak[0], next((m for m in weak[1:] if m.name != weak[0].name), None) or weak[0]
            if a.name != b.name:
                plans.append([a, b])
        plans.extend([m] for m in moves)
        for plan in plans:
            files = dict(ctx.files)
            for m in plan:
                files[m.path] = set_values(files[m.path], {m.name: m.new})
            if content_hash(files) in taken:
                continue
            rationale = plan[0].describe() if len(plan) == 1 else "combine two near-misses: " + "; ".join(
                f"{m.name} {format_value(m.old)} -> {format_value(m.new)}" for m in plan)
            return Proposal(files=files, rationale=rationale, cost=Cost(), raw_output=rationale,
                            meta={"moves": [[m.name, m.old, m.new, m.why] for m in plan]})
        raise ProposerExhausted("the search proposer has tried every move it can make from the incumbent; "
                             "stop here or switch to --proposer anthropic")

