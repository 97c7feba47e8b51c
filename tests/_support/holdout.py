"""An eval-like target with a sealed holdout, for the holdout and registration tests.

`solver.py` (editable) answers x -> x * x; `score.py` (fixed) scores it on the val cases of
cases.jsonl (the loop's metric, `val_score`) or on the sealed holdout.jsonl (`test_score`, only in
`optimize holdout` runs); every run prints whether it can see the sealed file, and each case is a
span whose input holds the case, so the sealed cases' marker lands in the store when they are scored.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

MARK = "SEALED-CASE-7f3a"
SCORE = textwrap.dedent('''\
    """Scores solver.solve: `val` on cases.jsonl, `test` on the sealed holdout.jsonl (absent from loop runs)."""
    import json
    import os
    import sys

    import tracekit
    from solver import solve

    split = sys.argv[1]
    print(f"sealed_visible: {int(os.path.exists('holdout.jsonl'))}")
    cases = [json.loads(line) for line in open("holdout.jsonl" if split == "test" else "cases.jsonl")]
    ok = 0
    for case in cases:
        with tracekit.span("case", kind="eval") as s:
            s.set_input(case)
            ok += solve(case["x"]) == case["y"]
    print(f"{split}_score: {ok / len(cases):.6f}")
''')
TOML = textwrap.dedent('''\
    [target]
    editable = ["solver.py"]
    fixed = ["score.py", "cases.jsonl"]
    run = "python score.py val"
    metric = "val_score"
    direction = "max"
    budget_s = 20
    [noise]
    baseline_runs = 1
    [holdout]
    run = "python score.py test"
    metric = "test_score"
    files = ["holdout.jsonl"]
''')
SOLVER = "def solve(x):\n    return x * 2\n"
GAMING = "ANSWERS = {3: 9, 4: 16}  # the val cases' answers\n\n\ndef solve(x):\n    return ANSWERS.get(x, x * 2)\n"
HONEST = "def solve(x):\n    return x * x\n"


def make_eval_target(root: Path, toml: str = TOML) -> Path:
    root.mkdir(parents=True)
    (root / "solver.py").write_text(SOLVER)
    (root / "score.py").write_text(SCORE)
    (root / "cases.jsonl").write_text("".join(json.dumps({"id": f"v{x}", "x": x, "y": x * x}) + "\n" for x in (3, 4, 5, 6)))
    (root / "holdout.jsonl").write_text("".join(json.dumps({"id": f"{MARK}-{x}", "x": x, "y": x * x}) + "\n"
                                                for x in (7, 8, 9)))
    (root / "tracekit.toml").write_text(toml)
    return root
