"""The optimizer's parts without running anything: target loading, tunables, edits, validation, context, search moves."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tracekit import OptimizerError
from tracekit.optimizer import Proposal, load_target
from tracekit.optimizer._context import elide
from tracekit.optimizer._edits import ProposalError, apply_edits, parse_reply
from tracekit.optimizer._ledger import tsv_fields
from tracekit.optimizer._search import SearchProposer
from tracekit.optimizer._tunables import changes_from_diff, find_tunables, set_values
from tracekit.optimizer._validate import InvalidProposal, build_candidate

from tests._support.optimizer import BOWL, make_target

# -- target --------------------------------------------------------------------------------------

def test_toml_and_flags(tmp_path: Path) -> None:
    root = make_target(tmp_path / "t", extra='fixed = ["data.txt"]\nsetup = "echo hi"\n[target.env]\nX = "1"',
                       files={"data.txt": "d", "program.md": "be bold"})
    t = load_target(root)
    assert (t.editable, t.fixed, t.metric, t.direction, t.budget_s) == (("train.py",), ("data.txt",), "val_loss", "min", 20.0)
    assert t.env == {"X": "1"} and t.setup == "echo hi" and t.program == "program.md" and t.program_text() == "be bold"
    t2 = load_target(root, {"budget_s": 5, "direction": "max", "env": {"Y": "2"}, "baseline_runs": 3, "metric": None})
    assert (t2.budget_s, t2.direction, dict(t2.env), t2.noise.baseline_runs, t2.metric) == (5, "max", {"X": "1", "Y": "2"}, 3, "val_loss")
    assert t2.improvement(2.0, 1.0) == 1.0 and t.improvement(2.0, 1.0) == -1.0


def test_autoresearch_folder_needs_only_flags(tmp_path: Path) -> None:
    root = tmp_path / "ar"
    root.mkdir()
    (root / "train.py").write_text("print('val_bpb: 1.0')\n")
    (root / "prepare.py").write_text("")
    with pytest.raises(OptimizerError, match="metric not set"):
        load_target(root)
    t = load_target(root, {"metric": "val_bpb", "fixed": ["prepare.py"], "run": "uv run train.py", "budget_s": 300})
    assert (t.editable, t.run, t.fixed, t.budget_s) == (("train.py",), "uv run train.py", ("prepare.py",), 300.0)


@pytest.mark.parametrize("toml, message", [
    ("[target]\nbogus = 1\n", "unknown keys in \\[target\\]"),
    ("[targets]\n", "unknown sections"),
    ("[target\n", "not valid TOML"),
    ('[target]\neditable = ["nope.py"]\nrun = "x"\nmetric = "m"\n', "does not exist"),
    ('[target]\neditable = ["../x.py"]\nrun = "x"\nmetric = "m"\n', "outside the target folder"),
    ('[target]\neditable = ["train.py"]\nfixed = ["train.py"]\nrun = "x"\nmetric = "m"\n', "both editable and fixed"),
    ('[target]\nrun = "x"\nmetric = "m"\ndirection = "down"\n', "direction"),
    ('[target]\nrun = "x"\nmetric = "m"\nbudget_s = "soon"\n', "wrong type"),
])
def test_bad_targets_say_what_to_fix(tmp_path: Path, toml: str, message: str) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "train.py").write_text("x = 1\n")
    (root / "tracekit.toml").write_text(toml)
    with pytest.raises(OptimizerError, match=message):
        load_target(root)


# -- tunables ------------------------------------------------------------------------------------

def test_tunables_between_markers_with_choices() -> None:
    ts = {t.name: t for t in find_tunables(BOWL)}
    assert set(ts) == {"LR", "WIDTH", "MODE"}
    assert (ts["LR"].kind, ts["WIDTH"].kind, ts["MODE"].kind, ts["MODE"].choices) == ("float", "int", "choice", ("a", "b", "c"))
    new = set_values(BOWL, {"LR": 0.0003, "WIDTH": 16, "MODE": "c"})
    assert 'LR = 3e-4  # learning rate' in new and "WIDTH = 16  # model width" in new and 'MODE = "c"  # one of' in new
    assert changes_from_diff("-LR = 0.1  # x\n+LR = 3e-4  # x\n-WIDTH = 8\n+WIDTH = 8\n") == {"LR": (0.1, 0.0003)}


def test_tunables_detected_without_markers() -> None:
    src = textwrap.dedent('''\
        import os
        SEED = 42
        BATCH_SIZE = 32
        USE_BIAS = True
        NAME = "model"
        ACT = "relu"  # "relu" or "gelu"
        lower_case = 3
        PATH = os.path.join("a", "b")
        def f():
            INNER = 1
    ''')
    assert [(t.name, t.kind) for t in find_tunables(src)] == [("BATCH_SIZE", "int"), ("USE_BIAS", "bool"), ("ACT", "choice")]
    assert find_tunables("def broken(:\n") == []


# -- edits ---------------------------------------------------------------------------------------

def test_search_replace_and_whole_file_replies() -> None:
    files = {"train.py": BOWL}
    reply = ("RATIONALE: raise the learning rate\nbecause the curve is flat.\n\ntrain.py\n```python\n<<<<<<< SEARCH\n"
             "LR = 0.1  # learning rate\n=======\nLR = 0.4  # learning rate\n>>>>>>> REPLACE\n```\n")
    parsed = parse_reply(reply, default_path="train.py")
    assert parsed.rationale == "raise the learning rate because the curve is flat."
    assert "LR = 0.4  # learning rate" in apply_edits(files, parsed.edits)["train.py"]
    whole = parse_reply("Rewrite.\n\nFILE: train.py\n```python\nprint('val_loss: 1')\n```\n")
    assert apply_edits(files, whole.edits) == {"train.py": "print('val_loss: 1')\n"}
    # trailing whitespace in the SEARCH text is tolerated; ambiguous and missing text are errors naming the fix
    assert "WIDTH = 9" in apply_edits(files, parse_reply("<<<<<<< SEARCH\nWIDTH = 8  # model width   \n=======\nWIDTH = 9\n>>>>>>> REPLACE",
                                                        default_path="train.py").edits)["train.py"]
    with pytest.raises(ProposalError, match="not found"):
        apply_edits(files, parse_reply("<<<<<<< SEARCH\nLR = 7\n=======\nLR = 8\n>>>>>>> REPLACE", "train.py").edits)
    with pytest.raises(ProposalError, match="occurs 2 times"):
        apply_edits({"train.py": "a\nb\na\n"}, parse_reply("<<<<<<< SEARCH\na\n=======\nc\n>>>>>>> REPLACE", "train.py").edits)
    with pytest.raises(ProposalError, match="no >>>>>>> REPLACE"):
        parse_reply("<<<<<<< SEARCH\na\n=======\nc\n", "train.py")


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("proposal, reason", [
    (Proposal(text="train.py\n<<<<<<< SEARCH\nnot there\n=======\nx\n>>>>>>> REPLACE"), "apply"),
    (Proposal(text="FILE: prepare.py\n```\nx = 1\n```"), "allowlist"),
    (Proposal(files={"other.py": "x"}), "allowlist"),
    (Proposal(files={"train.py": BOWL}), "noop"),
    (Proposal(text="I have no idea."), "apply"),
    (Proposal(text=""), "empty"),
    (Proposal(files={"train.py": BOWL + "def broken(:\n"}), "syntax"),
    (Proposal(files={"train.py": BOWL + "#" * 300_000}), "size"),
    (Proposal(files={"train.py": BOWL + "x = 1\n" * 3000}), "size"),
])
def test_invalid_proposals(tmp_path: Path, proposal: Proposal, reason: str) -> None:
    target = load_target(make_target(tmp_path / "t"))
    with pytest.raises(InvalidProposal) as info:
        build_candidate(proposal, {"train.py": BOWL}, target)
    assert info.value.reason == reason


def test_duplicates_are_invalid(tmp_path: Path) -> None:
    target = load_target(make_target(tmp_path / "t"))
    p = Proposal(files={"train.py": BOWL.replace("WIDTH = 8", "WIDTH = 16")})
    cand = build_candidate(p, {"train.py": BOWL}, target)
    assert cand.files_changed == ["train.py"] and cand.diff_lines == 2 and "+WIDTH = 16" in cand.diff
    with pytest.raises(InvalidProposal, match="identical to experiment main-0003") as info:
        build_candidate(p, {"train.py": BOWL}, target, known={cand.content_hash: "main-0003"})
    assert info.value.reason == "duplicate"


# -- context ---------------------------------------------------------------------------------------

def test_elide_keeps_head_and_tail() -> None:
    text = "\n".join(f"line {i}" for i in range(1000))
    out = elide(text, 400)
    assert len(out) <= 400 and out.startswith("line 0") and out.endswith("line 999") and "lines elided" in out
    assert elide(text, 300, keep="tail").endswith("line 999") and not elide(text, 300, keep="tail").startswith("line 0")
    assert elide("short", 100) == "short"


def test_tsv_row_is_autoresearch_shaped() -> None:
    row = {"status": "crash", "candidate_commit": "abcdef123", "metric": None, "summary": '{"peak_rss_mb": 2048}',
           "description": "tab\there"}
    assert tsv_fields(row) == ("abcdef1", "0.000000", "2.0", "crash", "tab here")
    assert tsv_fields({"status": "timeout", "metric": None, "description": "slow"})[3:] == ("crash", "[timeout] slow")


# -- the search proposer's strategy, from a ledger --------------------------------------------------

def _hist(status: str, old: str, new: str, imp: float) -> dict[str, object]:
    return {"status": status, "improvement": imp, "diff": f"-{old}\n+{new}\n"}


def _moves(history: list[dict[str, object]], files: dict[str, str] | None = None) -> list[str]:
    ctx = SimpleNamespace(history=history, files=files or {"train.py": BOWL}, target=SimpleNamespace(editable=("train.py",)))
    return [m.describe() for m in SearchProposer(seed=1).moves(ctx, random.Random(0))]  # type: ignore[arg-type]


def test_search_learns_from_the_ledger() -> None:
    assert _moves([])[0].startswith("LR ")  # untried, and learning rates come first
    # LR up lost: try LR down next
    assert _moves([_hist("discard", "LR = 0.1", "LR = 0.3", -0.1)])[0].startswith("LR 0.1 -> 0.03333")
    # LR up won: keep going up from the kept value; going back down would undo it
    kept = BOWL.replace("LR = 0.1", "LR = 0.3")
    moves = _moves([_hist("keep", "LR = 0.1", "LR = 0.3", 0.2)], {"train.py": kept})
    assert moves[0].startswith("LR 0.3 -> 0.9") and moves[-1].startswith("LR 0.3 -> 0.1 (would undo")
    # both LR directions failed: another setting comes first, and LR's step shrinks to sqrt(3)
    both = [_hist("discard", "LR = 0.1", "LR = 0.3", -0.1), _hist("discard", "LR = 0.1", "LR = 0.03333", -0.1)]
    moves = _moves(both)
    assert moves[0].startswith("WIDTH ") and any(m.startswith("LR 0.1 -> 0.1732") for m in moves)
    # a crash makes a move the last resort
    crashed = _moves([_hist("crash", 'MODE = "a"', 'MODE = "c"', 0.0)])
    assert crashed[-1] == 'MODE "a" -> "c" (crashed before)'


def test_output_tail_is_the_sandbox_text_cut_to_its_end(tmp_path: Path) -> None:
    from tracekit.optimizer._runs import _tail
    from tracekit.sandbox import CapturedOutput

    whole = CapturedOutput("head\n", "last line\n", 5 + 10, False, tmp_path / "out").to_dict()
    assert _tail(whole) == "head\nlast line\n"
    cut = CapturedOutput("H" * 50, "T" * 50 + "\nTraceback: boom\n", 10_000, True, tmp_path / "out").to_dict()
    text = _tail(cut, limit=80)
    assert text is not None and len(text) == 80 and text.endswith("Traceback: boom\n")
    assert "bytes elided" in (_tail(cut) or "")
    assert _tail({}) is None
