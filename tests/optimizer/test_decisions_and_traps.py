"""Every keep or discard explained with its numbers, wherever decisions are shown; progress with an
ETA; and the traps of issue 12: a stale run after fixing a failed baseline, a STOP file left behind,
--iterations across resumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracekit import OptimizerError
from tracekit._cli.main import main
from tracekit.optimizer._explain import reason
from tracekit.optimizer._report import progress_figure, summary_markdown
from tracekit.store._tables import ExperimentRow

from tests._support.optimizer import ScriptedProposer, make_target, optimize, replace_line

# The bowl's val_loss falls by about 0.04 when LR goes 0.1 -> 0.11 (a near miss under min_delta = 0.05),
# and by 0.56 when WIDTH goes 8 -> 32 (a keep).
NEAR_MISS = replace_line("LR = 0.1  # learning rate", "LR = 0.11  # learning rate", "a slightly higher learning rate")
BIG_WIN = replace_line("WIDTH = 8  # model width", "WIDTH = 32  # model width", "a wider model")
WORSE = replace_line('MODE = "a"  # one of "a", "b" or "c"', 'MODE = "c"  # one of "a", "b" or "c"', "mode c")


def _target(tmp_path: Path) -> Path:
    root = make_target(tmp_path / "bowl", baseline_runs=1)
    (root / "tracekit.toml").write_text((root / "tracekit.toml").read_text() + "min_delta = 0.05\nconfirm = false\n")
    return root


def test_every_decision_carries_its_reason_with_the_numbers(tmp_path: Path) -> None:
    s = optimize(_target(tmp_path), proposer=ScriptedProposer([NEAR_MISS, BIG_WIN, WORSE]), iterations=3)
    base, near, win, worse = s.rows
    assert base["reason"].startswith("baseline: ")
    assert near["status"] == "discard" and 0 < near["improvement"] < 0.05
    assert re.fullmatch(r"discard: [\d.]+ is [\d.]+ better than the incumbent [\d.]+, but not by more than the keep "
                        r"threshold 0\.05 \(min_delta; the noise is not measured yet\)", near["reason"]), near["reason"]
    assert win["status"] == "keep" and win["reason"].startswith("keep: ") and "beats the incumbent" in win["reason"]
    assert worse["status"] == "discard" and "worse than the incumbent" in worse["reason"]
    for row in s.rows:  # the stored reason is the one the row explains itself with
        assert row["reason"] == reason(row)


def test_status_summary_and_plot_show_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _target(tmp_path)
    s = optimize(root, proposer=ScriptedProposer([NEAR_MISS, BIG_WIN]), iterations=2)
    near = s.rows[1]
    assert main(["optimize", "status", str(root)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{near['improvement']:+.3g} <= threshold 0.05" in out  # the status table's "why" column
    md = summary_markdown(s.rows, "main")
    assert md.splitlines()[0] == "# Run main: 2 experiments (+1 baseline runs), 1 kept improvement"
    assert f"- {near['experiment_id']} a slightly higher learning rate: {near['reason']}" in md
    fig = progress_figure(s.rows)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "keep threshold: a keep must land beyond this band" in labels
    assert "discarded: better, but not by more than the keep threshold" in labels
    assert ax.get_title() == "2 experiments (+1 baseline runs), 1 kept improvement"  # the CLI's count, not rows


def test_plain_progress_is_timestamped_with_budget_elapsed_and_an_eta(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _target(tmp_path)
    assert main(["optimize", str(root), "-n", "2", "--proposer", "search", "--plain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    stamped = [ln for ln in lines if re.match(r"^\[\d\d:\d\d:\d\d\] ", ln)]
    assert any("running (budget 0:20)" in ln for ln in stamped)
    assert any(re.search(r"1 of 2 experiments done, \d+:\d\d elapsed, ends around \d\d:\d\d \(about \d+:\d\d from now\)", ln)
               for ln in stamped)
    assert any(ln.strip().startswith("[") and ("keep: " in ln or "discard: " in ln) for ln in stamped)


def test_a_fixed_target_after_a_failed_baseline_starts_again_instead_of_resuming_the_stale_run(tmp_path: Path) -> None:
    root = _target(tmp_path)
    good = (root / "train.py").read_text()
    (root / "train.py").write_text(good.replace("import math", "import math\nraise SystemExit('broken on purpose')"))
    with pytest.raises(OptimizerError, match="the baseline run failed"):
        optimize(root, proposer="search", iterations=1)
    (root / "train.py").write_text(good)  # the user fixes the target and runs the same command again
    events: list[tuple[str, dict]] = []
    s = optimize(root, proposer="search", iterations=1, events=events)
    assert [r["status"] for r in s.rows][:2] == ["crash", "baseline"]
    assert s.rows[1]["metric"] is not None
    warnings = [d["message"] for k, d in events if k == "warning"]
    assert any("had no successful baseline and the target changed since (train.py)" in w for w in warnings), warnings


def test_an_edited_target_after_a_good_baseline_is_named_with_what_to_do(tmp_path: Path) -> None:
    root = _target(tmp_path)
    optimize(root, proposer="search", iterations=1)
    (root / "train.py").write_text((root / "train.py").read_text().replace("LR = 0.1 ", "LR = 0.2 "))
    events: list[tuple[str, dict]] = []
    optimize(root, proposer="search", iterations=2, events=events)
    warnings = [d["message"] for k, d in events if k == "warning"]
    assert any("train.py changed since run 'main' started" in w and "--tag main-2" in w for w in warnings), warnings


def test_a_stop_file_left_from_before_does_not_end_the_next_run(tmp_path: Path) -> None:
    root = _target(tmp_path)
    optimize(root, proposer="search", iterations=1)
    stop = root / ".tracekit" / "optimizer" / "main" / "STOP"
    stop.write_text("")  # e.g. from an `optimize stop` of an older tracekit, or by hand
    events: list[tuple[str, dict]] = []
    s = optimize(root, proposer="search", iterations=2, events=events)
    assert s.stop_reason == "2 experiments done" and not stop.exists()
    assert any(k == "warning" and "left from an earlier `optimize stop`" in d["message"] for k, d in events)


def test_reason_of_a_failure_names_its_last_error_line() -> None:
    row: ExperimentRow = {"experiment_id": "x-0001", "run_id": "x", "seq": 1, "status": "crash",
                          "error": "exited with code 1: Traceback...\nValueError: nan loss"}
    assert reason(row) == "crash: ValueError: nan loss"
    row = {"experiment_id": "x-0002", "run_id": "x", "seq": 2, "status": "invalid",
           "error": "invalid (apply): SEARCH block not found"}
    assert reason(row) == "invalid, no run spent: invalid (apply): SEARCH block not found"
