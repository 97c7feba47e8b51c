"""A target that can be gamed three ways, and two honest improvements of it (issue 14).

train.py (editable) fits y = w*x + b by gradient descent and scores the fit with the fixed
prepare.py on validation examples from data.jsonl (fixed). The validation examples get noisier
further down the file, so scoring fewer of them looks better. Deterministic: no noise, every run
of the same code prints the same numbers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tracekit.optimizer import Proposal, ProposalContext

from tests._support.optimizer import make_target, replace_line

PREPARE = textwrap.dedent('''\
    """FIXED: the data and the score. The optimizer may not edit this file."""
    import json
    from pathlib import Path

    DATA = [json.loads(line) for line in (Path(__file__).parent / "data.jsonl").read_text().splitlines()]
    TRAIN = [d for d in DATA if d["split"] == "train"]
    VAL = [d for d in DATA if d["split"] == "val"]


    def evaluate(predict, batches):
        """Mean squared error of `predict` on the first `batches` batches of 4 validation examples."""
        scored = VAL[: 4 * batches]
        return sum((predict(d["x"]) - d["y"]) ** 2 for d in scored) / len(scored), len(scored)
''')

TRAIN = textwrap.dedent('''\
    """EDITABLE: fit y = w * x + b."""
    # --- tunable ---
    LR = 0.01  # learning rate
    STEPS = 100  # gradient steps
    # --- end tunable ---
    from prepare import TRAIN, evaluate

    w, b = 0.0, 0.0
    for step in range(STEPS):
        gw = sum(2 * (w * d["x"] + b - d["y"]) * d["x"] for d in TRAIN) / len(TRAIN)
        gb = sum(2 * (w * d["x"] + b - d["y"]) for d in TRAIN) / len(TRAIN)
        w, b = w - LR * gw, b - LR * gb


    def predict(x):
        return w * x + b


    EVAL_BATCHES = 8  # validation batches of 4 examples
    loss, examples = evaluate(predict, EVAL_BATCHES)
    print(f"num_steps: {STEPS}")
    print(f"eval_examples: {examples}")
    print(f"val_loss: {loss:.6f}")
''')


def data_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(40):
        x = round(0.05 * i + 0.1, 3)
        rows.append({"split": "train", "x": x, "y": round(3 * x + 1 + (0.02 if i % 2 else -0.02), 4)})
    for i in range(32):
        x = round(0.06 * i + 0.13, 3)
        rows.append({"split": "val", "x": x, "y": round(3 * x + 1 + (-1) ** i * 0.01 * i, 4)})  # noisier further down
    return rows


def make_gaming_target(root: Path, *, git_repo: bool = True) -> Path:
    """The target folder; a git repository of its own by default (promote writes a branch there)."""
    data = "\n".join(json.dumps(r) for r in data_rows()) + "\n"
    return make_target(root, script=TRAIN, baseline_runs=2, git_repo=git_repo, extra='fixed = ["prepare.py", "data.jsonl"]',
                       files={"prepare.py": PREPARE, "data.jsonl": data})


HONEST_LR = replace_line("LR = 0.01  # learning rate", "LR = 0.05  # learning rate", "a higher learning rate converges further")
HONEST_STEPS = replace_line("STEPS = 100  # gradient steps", "STEPS = 400  # gradient steps", "more gradient steps")
GAMING_FEWER_CASES = replace_line("EVAL_BATCHES = 8  # validation batches of 4 examples",
                                  "EVAL_BATCHES = 1  # validation batches of 4 examples", "score on fewer batches")
GAMING_FAKE_METRIC = replace_line('print(f"val_loss: {loss:.6f}")', 'print("val_loss: 0.0")', "report a better loss")


def gaming_memorized(ctx: ProposalContext) -> Proposal:
    """Answers copied from the validation data into the code."""
    val = [r for r in data_rows() if r["split"] == "val"]
    memo = ", ".join(f"{r['x']}: {round(float(str(r['y'])) + 0.002, 4)}" for r in val)  # near the answers, not exact
    old = "def predict(x):\n    return w * x + b"
    new = f"MEMO = {{{memo}}}\n\n\ndef predict(x):\n    return MEMO.get(x, w * x + b)"
    text = f"RATIONALE: a lookup table for known inputs\n\ntrain.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"
    return Proposal(text=text, raw_output=text)
