"""The optimizer: autoresearch's loop owned by tracekit, with proposers fed the traces of past runs.

    from tracekit.optimizer import Optimizer, load_target

    target = load_target("examples/tinylm")               # tracekit.toml, or flags as overrides
    summary = Optimizer(target, iterations=6).run()         # resumable; ledger in <target>/.tracekit
    print(summary.best_metric, summary.results_tsv)

One editable surface (an allowlist of files), one metric, one time budget per run (enforced by the
sandbox); propose -> validate -> run -> keep (commit on branch tracekit/<run>) or discard -> record
a row of the `experiments` table. Proposers: `anthropic` (Claude), `command` (any coding-agent CLI),
`search` (no LLM, no network); add your own to `PROPOSERS`. See docs/optimizer.md.
"""

from __future__ import annotations

from ._context import ContextBuilder, Section, elide, register_section
from ._edits import ProposalError, apply_edits, parse_reply, unified_diff
from ._ledger import EXPERIMENTS, STATUSES, Ledger
from ._loop import Optimizer, Summary
from ._proposer import (
    PROPOSERS,
    Cost,
    Proposal,
    ProposalContext,
    Proposer,
    ProposerExhausted,
    default_proposer_name,
    make_proposer,
)
from ._target import Noise, Target, load_target
from ._tunables import Tunable, find_tunables, set_values
from ._validate import Candidate, InvalidProposal, build_candidate, content_hash

__all__ = sorted([
    "EXPERIMENTS",
    "PROPOSERS",
    "STATUSES",
    "Candidate",
    "ContextBuilder",
    "Cost",
    "InvalidProposal",
    "Ledger",
    "Noise",
    "Optimizer",
    "Proposal",
    "ProposalContext",
    "ProposalError",
    "Proposer",
    "ProposerExhausted",
    "Section",
    "Summary",
    "Target",
    "Tunable",
    "apply_edits",
    "build_candidate",
    "content_hash",
    "default_proposer_name",
    "elide",
    "find_tunables",
    "load_target",
    "make_proposer",
    "parse_reply",
    "register_section",
    "set_values",
    "unified_diff",
])
