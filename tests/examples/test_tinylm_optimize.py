"""tinylm (examples/tinylm) under the optimizer, in its fixed-step deterministic mode (slow: real torch training)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tracekit

from tests._support import EXAMPLES
from tests._support.optimizer import optimize

EXAMPLE = EXAMPLES / "tinylm"


@pytest.mark.slow
def test_tinylm_deterministic_search_finds_a_kept_improvement(tmp_path: Path) -> None:
    if not (EXAMPLE / "data" / "corpus.bin").is_file():
        pytest.skip("examples/tinylm/data is not prepared: run `python examples/tinylm/prepare.py` (scripts/setup does)")
    root = tmp_path / "tinylm"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    s = optimize(root, iterations=4, proposer="search",
                 overrides={"env": {"TINYLM_STEPS": "120"}, "budget_s": 300})
    base = [r for r in s.rows if r["status"] == "baseline"]
    assert len(base) == 2 and base[0]["metric"] == base[1]["metric"]  # fixed steps: bit-identical, zero noise
    assert s.rows[2]["noise"] == 0.0
    assert all(r["status"] in ("keep", "discard", "crash", "timeout") for r in s.rows[2:])
    assert s.kept >= 1 and s.best_metric < s.baseline_metric
    keep = next(r for r in s.rows if r["status"] == "keep")
    assert keep["diff"].count("\n+") >= 1 and keep["improvement"] > 0
    summary = __import__("json").loads(keep["summary"])
    assert summary["num_steps"] == 120 and summary["val_bpb"] == keep["metric"]
    curve = tracekit.query(f"SELECT count(*), min(step), max(step) FROM metrics WHERE trace_id = '{keep['trace_id']}' "
                           "AND name = 'train_loss'", home=s.home).fetchall()
    assert curve == [(12, 10, 120)]
    # the fixed file was checked and never changed; the candidate's edit is on the branch
    assert (root / "prepare.py").read_bytes() == (EXAMPLE / "prepare.py").read_bytes()
