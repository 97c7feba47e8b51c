"""Pre-registration: the metric, direction, threshold rule, fixed files with their hashes, budget and holdout are
recorded before the baseline, carried by the baseline rows of `experiments`, shown by `optimize status`, and a
changed threshold rule is refused on resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import tracekit
from tracekit._cli.main import main
from tracekit._errors import OptimizerError
from tracekit.optimizer import Proposal, ProposalContext
from tracekit.optimizer._holdout import holdout
from tracekit.optimizer._ledger import Ledger
from tracekit.optimizer._rerun import target_for_run

from tests._support.holdout import HONEST, make_eval_target
from tests._support.optimizer import ScriptedProposer, make_target, optimize, replace_line

LR = replace_line("LR = 0.1  # learning rate", "LR = 0.4  # learning rate")


def square(ctx: ProposalContext) -> Proposal:
    return Proposal(files={"solver.py": HONEST}, rationale="square the input")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_registration_is_in_the_baseline_rows_and_in_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_eval_target(tmp_path / "t")
    home = root / ".tracekit"
    optimize(root, proposer=ScriptedProposer([square]), iterations=1)
    rows = tracekit.query("SELECT status, registration FROM experiments ORDER BY seq", home=home).fetchall()
    assert [s for s, _ in rows] == ["baseline", "keep"] and rows[1][1] is None
    reg = json.loads(rows[0][1])
    assert (reg["metric"], reg["direction"], reg["run"], reg["editable"]) == ("val_score", "max", "python score.py val",
                                                                              ["solver.py"])
    assert reg["threshold_rule"] == {"min_delta": 0.0, "noise_mult": 2.0, "baseline_runs": 1, "confirm": "auto",
                                     "rule": reg["threshold_rule"]["rule"]}
    assert reg["fixed"] == {"score.py": _sha(root / "score.py"), "cases.jsonl": _sha(root / "cases.jsonl")}
    assert reg["budget"]["budget_s"] == 20 and reg["budget"]["network"] is False
    assert reg["holdout"] == {"run": "python score.py test", "metric": "test_score", "budget_s": None,
                              "files": {"holdout.jsonl": _sha(root / "holdout.jsonl")}}
    started = json.loads((home / "optimizer" / "main" / "run.json").read_text())
    assert started["registration"] == reg  # written when the run was created, before the baseline ran

    assert main(["optimize", "status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pre-registered " in out and "val_score (higher is better), run python score.py val" in out
    assert "threshold: improvement > max(min_delta 0.0, 2.0 x noise / sqrt(runs)); 1 baseline runs; confirm auto" in out
    assert f"fixed: score.py sha256:{_sha(root / 'score.py')[:12]}" in out
    assert f"holdout: test_score by python score.py test; sealed holdout.jsonl sha256:{_sha(root / 'holdout.jsonl')[:12]}" in out
    assert main(["optimize", "status", str(root), "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["registration"] == reg


def test_resume_with_another_threshold_rule_is_refused(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl", baseline_runs=1)
    optimize(root, proposer=ScriptedProposer([LR]), iterations=1)
    toml = (root / "tracekit.toml").read_text()
    (root / "tracekit.toml").write_text(toml + "min_delta = 0.5\n")
    with pytest.raises(OptimizerError, match=r"pre-registered its threshold rule before its baseline \(min_delta 0.0\); "
                                             r"the target now says min_delta 0.5"):
        optimize(root, proposer=ScriptedProposer([]), iterations=2)
    (root / "tracekit.toml").write_text(toml)
    with pytest.raises(OptimizerError, match=r"\(confirm 'auto'\); the target now says confirm 'never'"):
        optimize(root, proposer=ScriptedProposer([]), iterations=2, overrides={"confirm": False})
    s = optimize(root, proposer=ScriptedProposer([]), iterations=2)  # restored: it resumes
    assert [r["status"] for r in s.rows] == ["baseline", "keep"]


def test_runs_from_before_registrations_resume_and_their_rows_still_load(tmp_path: Path) -> None:
    root = make_eval_target(tmp_path / "t")
    home = root / ".tracekit"
    optimize(root, proposer=ScriptedProposer([]), iterations=1)
    meta_path = home / "optimizer" / "main" / "run.json"
    meta = json.loads(meta_path.read_text())
    del meta["registration"]  # as an older tracekit wrote it
    meta_path.write_text(json.dumps(meta))
    for f in (home / "experiments").glob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.drop_columns(["registration", "alarms", "reason"]), f)  # its rows, without the newer columns
    assert [r["status"] for r in Ledger(home, "main").rows] == ["baseline"]

    optimize(root, proposer=ScriptedProposer([square]), iterations=1)
    meta = json.loads(meta_path.read_text())
    assert meta["registration"]["recorded_on_resume"] is True and meta["registration"]["metric"] == "val_score"
    with pytest.raises(OptimizerError, match="was not started with this \\[holdout\\] section"):
        holdout(target_for_run(root, home, "main"), home, "main")  # its files were not sealed from the first runs
