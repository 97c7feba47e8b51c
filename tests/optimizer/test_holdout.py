"""A sealed holdout: its files never reach a run, the base, the proposer's copy or its context; `optimize holdout`
scores them for the baseline and the best candidate and raises the overfitting alarm on a keep that fits the
optimized split only."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

import tracekit
from tracekit._cli.main import main
from tracekit._errors import OptimizerError
from tracekit.optimizer import Optimizer, Proposal, load_target
from tracekit.optimizer._holdout import holdout, overfitting
from tracekit.optimizer._ledger import Ledger
from tracekit.optimizer._promote import message
from tracekit.optimizer._rerun import target_for_run

from tests._support.holdout import GAMING, HONEST, MARK, TOML, make_eval_target
from tests._support.optimizer import ScriptedProposer, git, git_dir, optimize


def _files(folder: Path) -> str:
    """Every file name and content under `folder` (links not followed), for a search for the marker."""
    out = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = Path(dirpath) / n
            out.append(str(p.relative_to(folder)) + "\n" + (p.read_text(errors="replace") if not p.is_symlink() else ""))
    return "\n".join(out)


def test_sealed_files_never_reach_a_run_the_base_or_the_proposer(tmp_path: Path) -> None:
    root = make_eval_target(tmp_path / "t")
    home = root / ".tracekit"
    spy = tmp_path / "spy"
    spy.mkdir()
    script = tmp_path / "propose.sh"  # a command proposer that looks for the sealed split everywhere it is given
    script.write_text(textwrap.dedent(f'''\
        ls -R . >> {spy}/workspace.txt
        grep -rl {MARK} . "$TRACEKIT_CONTEXT_DIR" >> {spy}/found.txt || true
        if grep -q 'x \\* x' solver.py; then printf 'def solve(x):\\n    return x ** 2\\n' > solver.py
        else printf 'def solve(x):\\n    return x * x\\n' > solver.py; fi
        echo "square it" > "$TRACEKIT_RATIONALE_FILE"
    '''))

    def loop(n: int) -> list[dict[str, object]]:
        s = Optimizer(load_target(root), home=home, proposer="command", proposer_options={"command": f"sh {script}"},
                      iterations=n).run()
        return list(s.rows)  # type: ignore[arg-type]

    rows = loop(1)
    assert [r["status"] for r in rows] == ["baseline", "keep"]
    assert all(json.loads(str(r["summary"]))["sealed_visible"] == 0 for r in rows)  # not in any run's workspace
    run_dir = home / "optimizer" / "main"
    assert not (run_dir / "base" / "holdout.jsonl").exists() and (run_dir / "base" / "cases.jsonl").exists()
    assert "holdout.jsonl" not in (spy / "workspace.txt").read_text() and "cases.jsonl" in (spy / "workspace.txt").read_text()
    assert (spy / "found.txt").read_text() == ""
    tree = git(root, "--git-dir", str(git_dir(home)), "ls-tree", "-r", "--name-only", "tracekit/main").split()
    assert "holdout.jsonl" not in tree and "solver.py" in tree

    result = holdout(target_for_run(root, home, "main"), home, "main")
    assert (result["baseline"], result["candidate"], result["sealed_gain"], result["alarm"]) == (0.0, 1.0, 1.0, None)
    for m in result["measurements"]:  # the holdout's own runs do get the sealed split
        assert "sealed_visible: 1" in (Path(m["run_dir"]) / "stdout.log").read_text()
    seen = tracekit.query(f"SELECT count(*) FROM spans WHERE input LIKE '%{MARK}%'", home=home).fetchall()
    assert seen == [(6,)]  # the sealed cases are in the store now, under the holdout's trace

    rows = loop(2)  # the loop goes on: its proposer still sees nothing of them
    assert [r["status"] for r in rows] == ["baseline", "keep", "discard"]
    prompts = tracekit.query("SELECT prompt FROM experiments WHERE prompt IS NOT NULL", home=home).fetchall()
    assert len(prompts) == 2 and not any(MARK in p for (p,) in prompts)
    assert MARK not in _files(run_dir / "context") and (spy / "found.txt").read_text() == ""


def test_holdout_alarms_on_a_keep_that_fits_the_optimized_split_only(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = make_eval_target(tmp_path / "t")
    home = root / ".tracekit"
    step = [lambda ctx: _whole(GAMING, "answer the val cases"), lambda ctx: _whole(HONEST, "square the input")]
    s = optimize(root, proposer=ScriptedProposer(step), iterations=2)
    assert [(r["status"], r["metric"]) for r in s.rows] == [("baseline", 0.0), ("keep", 0.5), ("keep", 1.0)]

    assert main(["optimize", "holdout", str(root), "--experiment", "main-0001"]) == 1  # the gaming keep
    out = capsys.readouterr().out
    assert "ALARM overfitting: the sealed split moved +0, less than 0.5 x the optimized split's +0.5" in out
    assert main(["optimize", "holdout", str(root)]) == 0  # the best after review: the honest keep
    out = capsys.readouterr().out
    assert "sealed split (test_score) 0 -> 1, gain +1" in out and "No overfitting alarm." in out

    run_dir = home / "optimizer" / "main"
    gaming, honest = (json.loads(p.read_text()) for p in sorted(run_dir.glob("holdout-*.json")))
    assert (gaming["experiment"], gaming["optimized_gain"], gaming["sealed_gain"]) == ("main-0001", 0.5, 0.0)
    assert gaming["alarm"].startswith("overfitting:") and honest["alarm"] is None
    assert overfitting(0.5, float("nan")) and overfitting(0.5, -0.1) and not overfitting(-0.2, -0.5)
    assert (honest["metric"], honest["baseline"], honest["candidate"], honest["optimized_gain"], honest["sealed_gain"]) == (
        "test_score", 0.0, 1.0, 1.0, 1.0)
    notes = tracekit.query("SELECT target_id, label, score FROM annotations WHERE source = 'holdout' ORDER BY time",
                           home=home).fetchall()
    assert notes == [("main-0001", "overfitting", 0.0), ("main-0002", "holdout-held", 1.0)]
    rows = Ledger(home, "main").rows  # promote's commit message reads the latest report
    text = message("main", rows, [(rows[-1], str(rows[-1]["candidate_commit"]))], run_dir)
    assert "Sealed holdout (test_score): 0 -> 1; the optimized split moved +1, the sealed one +1." in text


def _whole(text: str, why: str) -> Proposal:
    return Proposal(files={"solver.py": text}, rationale=why)


def test_holdout_refuses_a_split_changed_since_registration_and_a_target_without_one(tmp_path: Path) -> None:
    root = make_eval_target(tmp_path / "t")
    home = root / ".tracekit"
    optimize(root, proposer=ScriptedProposer([lambda ctx: _whole(HONEST, "square")]), iterations=1)
    (root / "holdout.jsonl").write_text(json.dumps({"id": "easy", "x": 2, "y": 4}) + "\n")  # edited after the results
    with pytest.raises(OptimizerError, match=r"sealed files \['holdout.jsonl'\] changed since run 'main' pre-registered"):
        holdout(target_for_run(root, home, "main"), home, "main")
    plain = make_eval_target(tmp_path / "plain", TOML.split("[holdout]")[0])
    with pytest.raises(OptimizerError, match=r"has no \[holdout\] section"):
        holdout(load_target(plain), plain / ".tracekit", "main")


@pytest.mark.parametrize("section, error", [
    ('[holdout]\nrun = "python score.py test"\nmetric = "test_score"\n', r"files not set"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["cases.jsonl"]\n', r"\['cases.jsonl'\] cannot be sealed"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["solver.py"]\n', r"\['solver.py'\] cannot be sealed"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["tracekit.toml"]\n', r"\['tracekit.toml'\] cannot be sealed"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["missing.jsonl"]\n', r"sealed file 'missing.jsonl' does not exist"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["../outside.jsonl"]\n', r"outside the target folder"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["holdout.jsonl"]\nbudget_s = -1\n', r"budget_s must be a positive"),
    ('[holdout]\nrun = "x"\nmetric = "m"\nfiles = ["holdout.jsonl"]\nsplit = "test"\n', r"unknown keys in \[holdout\]"),
    ('holdout = ""\n', r"\[holdout\] must be a table"),
])
def test_a_holdout_section_that_would_not_seal_is_refused(tmp_path: Path, section: str, error: str) -> None:
    plain = TOML.split("[holdout]")[0]
    root = make_eval_target(tmp_path / "t", section + plain if section.startswith("holdout =") else plain + section)
    with pytest.raises(OptimizerError, match=error):
        load_target(root)


def test_other_ways_to_reach_a_sealed_file_are_refused(tmp_path: Path) -> None:
    root = make_eval_target(tmp_path / "t")
    (root / "data").mkdir()
    (root / "data" / "copy.jsonl").symlink_to(root / "holdout.jsonl")  # a link: copied as a link, readable by a proposer
    with pytest.raises(OptimizerError, match=r"data/copy.jsonl is a symbolic link to a sealed file"):
        load_target(root)
    (root / "data" / "copy.jsonl").unlink()
    os.link(root / "holdout.jsonl", root / "data" / "copy.jsonl")  # a hard link: copied as a plain file
    with pytest.raises(OptimizerError, match=r"data/copy.jsonl is a hard link of a sealed file"):
        load_target(root)
    (root / "data" / "copy.jsonl").unlink()
    with pytest.raises(OptimizerError, match=r"ro_paths entry '\.' holds the sealed holdout files"):
        load_target(root, {"ro_paths": ["."]})  # a read-only path every run could read
    (root / "tracekit.toml").write_text(TOML.replace("budget_s = 20", "budget_s = 20\nsetup = \"cp cases.jsonl holdout.jsonl\""))
    with pytest.raises(OptimizerError, match=r"holds the sealed holdout files \['holdout.jsonl'\] \(setup 'cp cases.jsonl holdout.jsonl' wrote them\)"):
        optimize(root, proposer=ScriptedProposer([]), iterations=1)  # setup writing one into the base
