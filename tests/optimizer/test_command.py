"""The command proposer with a scripted CLI: a small Python program acting as a coding agent."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import tracekit

from tests._support.optimizer import make_target, optimize

AGENT = textwrap.dedent('''\
    """A pretend coding agent: reads the context like an agent would, edits the workspace in place."""
    import csv, json, os, re, sys
    from pathlib import Path

    prompt = sys.stdin.read()
    ctx = Path(os.environ["TRACEKIT_CONTEXT_DIR"])
    assert prompt == Path(os.environ["TRACEKIT_PROMPT_FILE"]).read_text(), "stdin and prompt.md differ"
    assert Path.cwd() == Path(os.environ["TRACEKIT_WORKSPACE"]) == Path(sys.argv[1])
    rows = list(csv.DictReader((ctx / "history.tsv").open(), delimiter="\\t"))
    source = Path("train.py").read_text()
    assert source == (ctx / "current" / "train.py").read_text()
    width = int(re.search(r"WIDTH = (\\d+)", source).group(1))
    seen = sorted(p.name for p in (ctx / "experiments").iterdir())
    Path("train.py").write_text(source.replace(f"WIDTH = {width}", f"WIDTH = {width * 2}"))
    Path("notes.txt").write_text("scratch notes the optimizer must ignore")
    Path(os.environ["TRACEKIT_RATIONALE_FILE"]).write_text(
        f"double the width to {width * 2}; saw {len(rows)} experiments: {' '.join(seen)}")
    print(json.dumps({"type": "result", "result": "done", "total_cost_usd": 0.0125,
                      "usage": {"input_tokens": 300, "output_tokens": 40, "cache_read_input_tokens": 100}}))
''')


def test_scripted_cli_edits_in_place_and_only_the_allowlist_is_kept(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    s = optimize(root, proposer="command", iterations=2,
                 proposer_options={"command": f"{sys.executable} {agent} {{workspace}}"})
    assert [r["status"] for r in s.rows] == ["baseline", "keep", "keep"]
    first, second = s.rows[1], s.rows[2]
    assert first["files_changed"] == ["train.py"] and "notes.txt" not in first["diff"]
    assert "+WIDTH = 16  # model width" in first["diff"] and "+WIDTH = 32  # model width" in second["diff"]
    assert first["description"] == "double the width to 16; saw 1 experiments: main-0000"
    assert second["description"] == "double the width to 32; saw 2 experiments: main-0000 main-0001"
    assert (first["cost_usd"], first["tokens_in"], first["tokens_out"], first["cache_read_tokens"]) == (0.0125, 300, 40, 100)
    ctx = s.home / "optimizer" / "main" / "context"
    assert not (ctx / "history.tsv").stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert (ctx / "experiments" / "main-0001" / "diff.patch").read_text() == first["diff"]
    assert "val_loss: 2.424976" in (ctx / "experiments" / "main-0000" / "stdout.txt").read_text()
    metrics = (ctx / "experiments" / "main-0000" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "name,step,value,time" and len(metrics) == 7  # header, 5 train_loss points, the val_loss the sandbox recorded
    spans = (ctx / "experiments" / "main-0000" / "spans.csv").read_text()
    assert "compute_loss" in spans and "optimizer.run" in spans
    assert not (root / "notes.txt").exists() and "WIDTH = 8" in (root / "train.py").read_text()


def test_failing_or_hanging_commands_are_invalid(tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    fail = tmp_path / "fail.py"
    fail.write_text("import sys\nprint('working...')\nprint('model quota exhausted', file=sys.stderr)\nsys.exit(3)\n")
    s = optimize(root, proposer="command", iterations=2, proposer_options={"command": [sys.executable, str(fail)]})
    assert [(r["status"], r["repair_of"]) for r in s.rows] == [("baseline", None), ("invalid", None), ("invalid", "main-0001")]
    assert "exited with code 3" in s.rows[1]["error"] and "model quota exhausted" in s.rows[1]["error"]
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(60)\n")
    root2 = make_target(tmp_path / "bowl2")
    s = optimize(root2, proposer="command", iterations=1,
                 proposer_options={"command": f"{sys.executable} {hang}", "timeout_s": 1})
    assert s.rows[1]["status"] == "invalid" and "timeout" in s.rows[1]["error"]
    rows = tracekit.query("SELECT count(*) FROM experiments WHERE status = 'invalid' AND run_s = 0", home=s.home).fetchall()
    assert rows == [(2,)]
    assert json.loads(s.rows[1]["host"])["cpus"] >= 1
