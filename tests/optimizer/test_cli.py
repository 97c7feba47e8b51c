"""`tracekit optimize` from the command line: an autoresearch-style folder with flags only, status, report, stop."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tracekit._cli.main import main

AUTORESEARCH_TRAIN = textwrap.dedent('''\
    """Stands in for karpathy/autoresearch's train.py: no tracekit, prints a summary block."""
    from prepare import TIME_BUDGET
    DEPTH = 8
    TOTAL_BATCH_SIZE = 2**19  # not a literal: left alone by the search proposer
    EMBEDDING_LR = 0.6
    val_bpb = 1.0 + abs(DEPTH - 6) * 0.01 + abs(EMBEDDING_LR - 0.9) * 0.1
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {TIME_BUDGET:.1f}")
    print("peak_vram_mb:     2048.0")
''')


def _autoresearch(tmp_path: Path) -> Path:
    root = tmp_path / "autoresearch"
    root.mkdir()
    (root / "train.py").write_text(AUTORESEARCH_TRAIN)
    (root / "prepare.py").write_text("TIME_BUDGET = 300  # fixed, do not modify\n")
    (root / "program.md").write_text("# autoresearch\nLOOP FOREVER: lower val_bpb.\n")
    return root


def test_flags_only_autoresearch_folder_then_status_report_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _autoresearch(tmp_path)
    code = main(["optimize", str(root), "--metric", "val_bpb", "--fixed", "prepare.py", "--budget", "20",
                 "--baseline-runs", "1", "-n", "3", "--proposer", "search", "--plain", "--tag", "mar8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "stopped: 3 experiments done" in out and "mar8-0003" in out and "baseline val_bpb 1.05" in out
    assert "EMBEDDING_LR 0.6 ->" in out or "DEPTH 8 ->" in out
    tsv = (root / ".tracekit" / "optimizer" / "mar8" / "results.tsv").read_text().splitlines()
    assert tsv[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and tsv[1].split("\t")[1:4] == ["1.050000", "2.0", "keep"]

    assert main(["optimize", "status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "# Run mar8: 3 experiments (+1 baseline runs)" in out and "- baseline: 1.05 over 1 runs" in out and "mar8-0002" in out

    png = tmp_path / "progress.png"
    assert main(["optimize", "report", str(root), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "summary.md").read_text() in out

    assert main(["optimize", "stop", str(root)]) == 0  # no loop is running: nothing to stop, and no STOP left behind
    assert "no loop is running run 'mar8'" in capsys.readouterr().out
    assert not (root / ".tracekit" / "optimizer" / "mar8" / "STOP").exists()
    assert main(["optimize", str(root), "--metric", "val_bpb", "--fixed", "prepare.py", "--budget", "20",
                 "--baseline-runs", "1", "-n", "4", "--proposer", "search", "--plain", "--tag", "mar8"]) == 0
    out = capsys.readouterr().out
    assert "resuming run mar8: 3 experiments already decided; --iterations 4 counts the whole run, so 1 more" in out
    assert "stopped: 4 experiments done" in out and "mar8-0004" in out

    assert main(["sql", "--home", str(root / ".tracekit"), "--format", "csv",
                 "SELECT status, count(*) AS n FROM experiments GROUP BY status ORDER BY status"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "status,n"


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())  # the error console wraps long lines


def test_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _autoresearch(tmp_path)
    assert main(["optimize", str(root), "--plain"]) == 2
    err = _err(capsys)
    assert "error: target" in err and "--metric NAME" in err
    assert main(["optimize", str(tmp_path / "nowhere"), "--plain"]) == 2
    assert "does not exist" in _err(capsys)
    assert main(["optimize", "status", str(root)]) == 2
    assert "no optimization run" in _err(capsys)
    assert main(["optimize", str(root), "--metric", "val_bpb", "--proposer", "gpt", "--plain"]) == 2
    assert "unknown proposer 'gpt'" in _err(capsys)
    assert main(["optimize", str(root), "--metric", "val_bpb", "--max-time", "soon", "--plain"]) == 2
    assert "--max-time 'soon'" in _err(capsys)


def test_live_display_renders_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _autoresearch(tmp_path)
    assert main(["optimize", str(root), "--metric", "val_bpb", "--baseline-runs", "1", "-n", "2",
                 "--proposer", "search", "--live"]) == 0
    out = capsys.readouterr().out
    assert "tracekit optimize autoresearch · run main · proposer search" in out
    assert "2 of 2 experiments done" in out and "best val_bpb:" in out and "stopped: 2 experiments done" in out
