"""The registry of proposers: a plain dict of name -> factory(target, options), apart from the
Protocol it registers (`_proposer`), so each proposer imports the seam and nothing imports back.

    from tracekit.optimizer import PROPOSERS
    PROPOSERS["mine"] = lambda target, options: MyProposer()   # then: tracekit optimize --proposer mine
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import OptimizerError
from ._proposer import Proposer

if TYPE_CHECKING:
    from ._target import Target

ProposerFactory = Callable[["Target", dict[str, Any]], Proposer]


def _anthropic(target: "Target", options: dict[str, Any]) -> Proposer:
    from ._anthropic import AnthropicProposer

    return AnthropicProposer.from_options(options)


def _command(target: "Target", options: dict[str, Any]) -> Proposer:
    from ._command import CommandProposer

    return CommandProposer.from_options(options)


def _search(target: "Target", options: dict[str, Any]) -> Proposer:
    from ._search import SearchProposer

    return SearchProposer.from_options(options)


# name -> factory(target, options). Add your own; the CLI's --proposer picks from these keys.
PROPOSERS: dict[str, ProposerFactory] = {
    "anthropic": _anthropic,
    "command": _command,
    "search": _search,
}


def default_proposer_name() -> str:
    """Claude when an API key is present, otherwise the search proposer (no network needed)."""
    return "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "search"


def make_proposer(name: str | None, target: "Target", options: dict[str, Any] | None = None) -> Proposer:
    chosen = name or target.proposer.get("name") or default_proposer_name()
    factory = PROPOSERS.get(chosen)
    if factory is None:
        raise OptimizerError(f"unknown proposer {chosen!r}; choose one of {', '.join(sorted(PROPOSERS))}")
    merged = {k: v for k, v in dict(target.proposer).items() if k != "name"}
    merged.update({k: v for k, v in (options or {}).items() if v is not None})
    return factory(target, merged)
