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

from ._alarms import ALARMS, AlarmInput
from ._context import register_section
from ._ledger import STATUSES, Ledger
from ._loop import Optimizer, Summary
from ._proposer import Cost, Proposal, ProposalContext, Proposer, ProposerExhausted
from ._proposers import PROPOSERS
from ._section import Section
from ._target import Noise, Target, load_target

__all__ = [
    "ALARMS",
    "AlarmInput",
    "Cost",
    "Ledger",
    "Noise",
    "Optimizer",
    "PROPOSERS",
    "Proposal",
    "ProposalContext",
    "Proposer",
    "ProposerExhausted",
    "STATUSES",
    "Section",
    "Summary",
    "Target",
    "load_target",
    "register_section",
]
