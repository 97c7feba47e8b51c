"""The morning after (issue 14): three gaming candidates and two honest ones; the loop keeps what its
rule says, every gaming keep carries an alarm and no honest keep does; review rejects the gaming keeps,
the branch ends with the honest changes only, and promote writes the expected commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracekit import OptimizerError
from tracekit._cli.main import main
from tracekit.optimizer._promote import promote
from tracekit.optimizer._review import load_chain

from tests._support.gaming import (
    GAMING_FAKE_METRIC,
    GAMING_FEWER_CASES,
    GAMING_MEMORIZED,
    HONEST_LR,
    HONEST_STEPS,
    make_gaming_target,
)
from tests._support.optimizer import ScriptedProposer, git, optimize


def _by_description(rows: list) -> dict[str, dict]:
    return {r["description"]: r for r in rows if r["status"] in ("keep", "discard")}


def test_gaming_keeps_carry_alarms_and_review_leaves_only_the_honest_changes(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = make_gaming_target(tmp_path / "fit")
    steps = [HONEST_LR, HONEST_STEPS, GAMING_FEWER_CASES, GAMING_MEMORIZED, GAMING_FAKE_METRIC]
    s = optimize(root, proposer=ScriptedProposer(steps), iterations=5)
    rows = _by_description(s.rows)
    honest = [rows["a higher learning rate converges further"], rows["more gradient steps"]]
    gaming = [rows["score on fewer batches"], rows["report a better loss"], rows["a lookup table for known inputs"]]
    assert [r["status"] for r in honest + gaming] == ["keep"] * 5  # the rule keeps what scores better
    for r in honest:
        assert not r.get("alarms"), (r["description"], r.get("alarms"))
    alarms = {r["description"]: " | ".join(r["alarms"]) for r in gaming}
    assert "did_less_work: it did less work: eval_examples 4 vs 32 in the baseline" in alarms["score on fewer batches"]
    assert "touches_metric_output" in alarms["report a better loss"]
    assert "literal_answers: the diff adds literals: " in alarms["a lookup table for known inputs"]
    assert "values from the fixed data.jsonl" in alarms["a lookup table for known inputs"]

    assert main(["optimize", "status", str(root)]) == 0  # alarms are the first thing the status shows of a keep
    assert capsys.readouterr().out.count("ALARM") >= 3

    with pytest.raises(OptimizerError, match="are not reviewed"):
        promote(root / ".tracekit", "main")  # nothing ships before a human looked
    rejected = [r["experiment_id"] for r in gaming]
    approved = [r["experiment_id"] for r in honest]
    assert main(["optimize", "review", str(root), *sum((["--reject", e] for e in rejected), []),
                 "--why", "games the metric", "--by", "ana"]) == 0
    assert main(["optimize", "review", str(root), *sum((["--approve", e] for e in approved), []), "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert f"branch tracekit/main rebuilt: {approved[0]}, {approved[1]}; rejected {', '.join(sorted(rejected))}" in out
    chain = load_chain(root / ".tracekit", "main")
    assert chain is not None and [link.experiment_id for link in chain.links] == approved
    head = git(root, "rev-parse", "tracekit/main")
    assert head == honest[1]["candidate_commit"]  # no rebase needed: the rejected keeps came after
    branch_train = git(root, "show", "tracekit/main:train.py")
    assert "LR = 0.05" in branch_train and "STEPS = 400" in branch_train
    assert "EVAL_BATCHES = 8" in branch_train and "MEMO" not in branch_train and "0.0\")" not in branch_train

    assert main(["optimize", "promote", str(root)]) == 0
    assert "promoted run 'main': branch tracekit/main-promoted" in capsys.readouterr().out
    message = git(root, "log", "-1", "--format=%B", "tracekit/main-promoted")
    assert message.splitlines()[0] == f"tracekit: val_loss 0.118565 -> {honest[1]['metric']:.6g} (run main, 2 kept experiments)"
    for r in honest:
        assert r["experiment_id"] in message and str(r["trace_id"]) in message
    for r in gaming:
        assert r["experiment_id"] not in message
    promoted = git(root, "show", "tracekit/main-promoted:train.py")
    assert promoted == branch_train
    assert git(root, "rev-parse", "tracekit/main-promoted^") == git(root, "rev-parse", "HEAD")  # on top of the user's HEAD
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""  # the checkout is untouched


def test_rejecting_a_keep_in_the_middle_rebases_the_later_ones_and_the_loop_resumes_from_there(tmp_path: Path) -> None:
    root = make_gaming_target(tmp_path / "fit")
    s = optimize(root, proposer=ScriptedProposer([HONEST_LR, GAMING_FEWER_CASES, HONEST_STEPS]), iterations=3)
    rows = _by_description(s.rows)
    lr, fewer, steps = rows["a higher learning rate converges further"], rows["score on fewer batches"], rows["more gradient steps"]
    assert fewer["status"] == "keep" and fewer.get("alarms") and steps["status"] == "keep"
    assert main(["optimize", "review", str(root), "--reject", fewer["experiment_id"], "--why", "fewer cases"]) == 0
    chain = load_chain(root / ".tracekit", "main")
    assert chain is not None
    assert [(link.experiment_id, link.rebased) for link in chain.links] == [(lr["experiment_id"], False),
                                                                           (steps["experiment_id"], True)]
    train = git(root, "show", "tracekit/main:train.py")
    assert "STEPS = 400" in train and "LR = 0.05" in train and "EVAL_BATCHES = 8" in train
    # the loop resumes from the reviewed branch, not from the rejected keep
    events: list = []
    optimize(root, proposer=ScriptedProposer([]), iterations=3, events=events)
    assert not [d for k, d in events if k == "warning" and "moved the branch" in d.get("message", "")]
    assert git(root, "rev-parse", "tracekit/main") == chain.head


def test_review_refuses_what_is_not_a_keep_and_a_rejection_without_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_gaming_target(tmp_path / "fit")
    optimize(root, proposer=ScriptedProposer([HONEST_LR]), iterations=1)
    assert main(["optimize", "review", str(root), "--reject", "main-0000", "--why", "x"]) == 2
    assert "is not a kept experiment of run 'main'" in " ".join(capsys.readouterr().err.split())
    assert main(["optimize", "review", str(root), "--reject", "main-0002"]) == 2
    assert "say why main-0002 is rejected" in " ".join(capsys.readouterr().err.split())
