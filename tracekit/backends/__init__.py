"""tracekit as an optimizer backend: evaluate candidates, read why from their traces, record them.

    from tracekit.backends import Experiments

    exps = Experiments("my-search", metric="score", direction="max", proposer="mine")
    best = exps.evaluate({"solve.py": seed}, command=["python", "solve.py"], budget_s=30)
    for _ in range(5):
        child = exps.evaluate({"solve.py": propose(best.files, exps.digest(best))},
                              command=["python", "solve.py"], parent=best)
        best = child if child.improved else best

`Experiments.evaluate` runs a candidate (files or text, plus a command in the sandbox or an eval
task) under a budget and records it as a row of `experiments` with its trace; `digest` is the
built-in proposer's trace sections for any experiments; `record` writes a row for an evaluation
done elsewhere. Adapters for third-party optimizers, each importing its library only when used:
`tracekit.backends.gepa` (GEPA's adapter and `optimize_anything` evaluator),
`tracekit.backends.openevolve` (an evaluator with artifacts), `tracekit.backends.dspy` (a GEPA
feedback metric). See docs/backends.md.
"""

from __future__ import annotations

from ._evaluate import Candidate, Evaluation
from ._experiments import Experiments

__all__ = [
    "Candidate",
    "Evaluation",
    "Experiments",
]
