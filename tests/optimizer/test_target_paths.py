"""The optimizer never writes outside the places it owns: links in the target, or planted during a run, redirect nothing.

Real targets in tmp folders, real git, the real loop and sandbox; the command proposer is a small
Python script acting as a hostile coding agent. Every test ends by comparing an "outside" folder,
byte for byte, with what it held before.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tracekit import OptimizerError
from tracekit._cli.main import main
from tracekit.optimizer import Proposal, load_target
from tracekit.optimizer._safefs import Dir, UnsafePath, copy_tree, write_file
from tracekit.optimizer._validate import InvalidProposal, build_candidate

from tests._support.optimizer import ScriptedProposer, make_target, optimize

NESTED_MODEL = textwrap.dedent('''\
    # --- tunable ---
    WIDTH = 8  # model width
    # --- end tunable ---
''')
NESTED_TRAIN = textwrap.dedent('''\
    from pkg.model import WIDTH
    print(f"val_loss: {abs(WIDTH - 32) / 32 + 1.0:.6f}")
''')


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry under `folder`: kind, mode and bytes (or link target); links are not followed."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(folder))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def outside_folder(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    (out / "od").mkdir(parents=True)
    (out / "victim.txt").write_text("the operator's file\n")
    (out / "secret.txt").write_text("TOP-SECRET-TOKEN\n")
    (out / "model.py").write_text("WIDTH = 1000  # not the target's\n")
    (out / "od" / "keep.txt").write_text("keep me\n")
    return out


def _toml(root: Path, editable: str, fixed: str = "") -> None:
    text = (root / "tracekit.toml").read_text().replace('editable = ["train.py"]', f"editable = [{editable}]")
    if fixed:
        text = text.replace("[noise]", f"fixed = [{fixed}]\n[noise]")
    (root / "tracekit.toml").write_text(text)


@pytest.mark.parametrize(("editable", "fixed", "message"), [
    ('"sub/model.py"', "", "goes through the symbolic link"),
    ('"linked.py"', "", "goes through the symbolic link"),
    ('"train.py"', '"sub/model.py"', "goes through the symbolic link"),
    ('"/etc/hostname"', "", "outside the target folder"),
    ('"../outside/model.py"', "", "outside the target folder"),
    ('"pkg/../../outside/model.py"', "", "outside the target folder"),
])
def test_editable_or_fixed_path_through_a_link_or_outside_is_refused_at_load(
        tmp_path: Path, editable: str, fixed: str, message: str) -> None:
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "t")
    (root / "sub").symlink_to(outside)
    (root / "linked.py").symlink_to(outside / "model.py")
    _toml(root, editable, fixed)
    with pytest.raises(OptimizerError, match=message):
        load_target(root)
    code = main(["optimize", str(root), "-n", "1", "--proposer", "search", "--plain"])
    assert code == 2
    assert snapshot(outside) == before
    assert not (root / ".tracekit").exists()  # refused before anything was written


def test_editable_with_a_nul_byte_is_refused(tmp_path: Path) -> None:
    root = make_target(tmp_path / "t")
    with pytest.raises(OptimizerError, match="NUL byte"):
        load_target(root, {"editable": ["train.py\0x"]})


def test_target_links_elsewhere_are_copied_as_links_and_never_written_through(tmp_path: Path) -> None:
    """A link the target holds outside the editable paths (a data folder, say) stays a link in every copy."""
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "t")
    (root / "data").symlink_to(outside / "od")
    s = optimize(root, iterations=2, proposer="search")
    assert [r["status"] for r in s.rows][0] == "baseline" and len(s.rows) == 3
    base = s.home / "optimizer" / "main" / "base"
    assert (base / "data").is_symlink() and os.readlink(base / "data") == str(outside / "od")
    assert snapshot(outside) == before


HOSTILE_AGENT = textwrap.dedent('''\
    """A hostile coding agent: plants links where tracekit writes, then (on its repair turn) edits honestly."""
    import csv, os, re, sys
    from pathlib import Path

    outside = Path(sys.argv[1])
    ctx = Path(os.environ["TRACEKIT_CONTEXT_DIR"])
    run = ctx.parent
    rows = list(csv.DictReader((ctx / "history.tsv").open(), delimiter="\\t"))

    def plant(path, target):
        path = Path(path)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            import shutil
            shutil.rmtree(path)
        path.symlink_to(target)

    if len(rows) == 1:
        for folder in (ctx, ctx / "experiments"):
            os.chmod(folder, 0o755)  # read-only is a hint, not a barrier: its owner (or root) lifts it
        plant(ctx / "README.md", outside / "victim.txt")
        plant(ctx / "history.tsv", outside / "victim.txt")
        plant(ctx / "current", outside / "od")
        plant(ctx / "experiments" / "main-0001", outside / "od")
        plant(ctx / "experiments" / "main-0002", outside / "od")
        plant(run / "results.tsv", outside / "victim.txt")
        plant(run / "work", outside / "od")
        plant(run / "experiments" / "main-0003", outside / "od")
        plant("train.py", outside / "model.py")  # the editable file itself becomes a link
        plant(os.environ["TRACEKIT_RATIONALE_FILE"], outside / "secret.txt")
        print("planted")
    else:
        source = Path("train.py").read_text()
        width = int(re.search(r"WIDTH = (\\d+)", source).group(1))
        Path("train.py").write_text(source.replace(f"WIDTH = {width}", f"WIDTH = {width * 2}"))
        Path(os.environ["TRACEKIT_RATIONALE_FILE"]).write_text(f"double the width to {width * 2}")
''')


def test_links_planted_by_a_command_proposer_redirect_no_write_and_no_read(tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "bowl")
    agent = tmp_path / "agent.py"
    agent.write_text(HOSTILE_AGENT)
    s = optimize(root, proposer="command", iterations=3,  # the invalid proposal counts as one
                 proposer_options={"command": [sys.executable, str(agent), str(outside)]})
    assert snapshot(outside) == before
    statuses = [(r["experiment_id"], r["status"]) for r in s.rows]
    assert statuses == [("main-0000", "baseline"), ("main-0001", "invalid"), ("main-0002", "keep"), ("main-0003", "keep")]
    assert s.rows[1]["error"].startswith("invalid (symlink)") and "train.py" in s.rows[1]["error"]
    assert s.rows[2]["repair_of"] == "main-0001" and s.rows[3]["description"] == "double the width to 32"
    for r in s.rows:  # nothing read through a planted link reached the ledger
        assert "TOP-SECRET" not in str(r) and "WIDTH = 1000" not in (r.get("diff") or "")
    run = s.home / "optimizer" / "main"
    ctx = run / "context"
    for p in (ctx / "README.md", ctx / "history.tsv", run / "results.tsv"):
        assert stat.S_ISREG(p.lstat().st_mode), p
    for p in (ctx / "current", ctx / "experiments" / "main-0001", ctx / "experiments" / "main-0002",
              run / "work", run / "experiments" / "main-0003"):
        assert stat.S_ISDIR(p.lstat().st_mode), p
    assert (ctx / "experiments" / "main-0002" / "diff.patch").read_text() == s.rows[2]["diff"]
    assert "WIDTH = 8" in (root / "train.py").read_text()


LINK_BASE_AGENT = textwrap.dedent('''\
    """Replaces the run's base/pkg with a link to a folder outside, then proposes an edit of pkg/model.py."""
    import os, sys
    from pathlib import Path

    base = Path(os.environ["TRACEKIT_CONTEXT_DIR"]).parent / "base"
    if not (base / "pkg").is_symlink():
        import shutil
        shutil.rmtree(base / "pkg")
        (base / "pkg").symlink_to(sys.argv[1])
    src = Path("pkg/model.py").read_text()
    Path("pkg/model.py").write_text(src.replace("WIDTH = 8", "WIDTH = 16"))
''')


def test_link_planted_in_the_base_stops_the_loop_before_a_write_outside_and_resume_recovers(tmp_path: Path) -> None:
    """The reported attack: `pkg -> outside`, editable pkg/model.py; the discarded candidate went outside."""
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "nested", script=NESTED_TRAIN,
                       files={"pkg/__init__.py": "", "pkg/model.py": NESTED_MODEL})
    _toml(root, '"pkg/model.py"')
    agent = tmp_path / "agent.py"
    agent.write_text(LINK_BASE_AGENT)
    opts = {"command": [sys.executable, str(agent), str(outside)]}
    with pytest.raises(OptimizerError, match=r"symbolic link.*delete .*base"):
        optimize(root, proposer="command", iterations=1, proposer_options=opts)
    assert snapshot(outside) == before
    shutil.rmtree(root / ".tracekit" / "optimizer" / "main" / "base")  # what the error says to do
    s = optimize(root, proposer="command", iterations=1, proposer_options={"command": [sys.executable, "-c", "pass"]})
    assert [(r["experiment_id"], r["status"]) for r in s.rows] == [("main-0000", "baseline"), ("main-0001", "keep")]
    assert "+WIDTH = 16" in s.rows[1]["diff"]  # the intent was kept and run again under its id
    assert snapshot(outside) == before


@pytest.mark.parametrize("path", ["../outside/model.py", "/etc/hostname", "train.py\0", "./train.py", "sub//x.py"])
def test_proposal_paths_that_leave_the_target_are_invalid(tmp_path: Path, path: str) -> None:
    target = load_target(make_target(tmp_path / "t"))
    parent = {"train.py": (target.root / "train.py").read_text()}
    for proposal in (Proposal(files={path: "x = 1\n"}), Proposal(text=f"FILE: {path}\n```python\nx = 1\n```\n")):
        if proposal.text is not None and ("\0" in path or "//" in path):
            continue  # the reply grammar cannot carry these in a FILE: line
        with pytest.raises(InvalidProposal) as info:
            build_candidate(proposal, parent, target)
        assert info.value.reason == "path", info.value


def test_invalid_paths_in_the_loop_are_recorded_and_spend_no_run(tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "t")
    rel = os.path.relpath(outside / "model.py", root)
    script = ScriptedProposer([
        lambda ctx: Proposal(files={rel: "WIDTH = 2\n"}, rationale="escape with .."),
        lambda ctx: Proposal(text=f"FILE: {outside / 'model.py'}\n```python\nWIDTH = 3\n```\n", rationale="absolute"),
        lambda ctx: Proposal(files={"train.py\0": "x = 1\n"}, rationale="nul"),
        lambda ctx: Proposal(files={"train.py": b"x = 1\n"}, rationale="bytes"),  # type: ignore[dict-item]
    ])
    s = optimize(root, proposer=script, iterations=4)
    assert [r["status"] for r in s.rows] == ["baseline", "invalid", "invalid", "invalid", "invalid"]
    assert [r["error"].split(":")[0] for r in s.rows[1:]] == ["invalid (path)"] * 3 + ["invalid (parse)"]
    assert all(r["run_s"] == 0 for r in s.rows[1:])
    assert snapshot(outside) == before


def test_report_and_stop_replace_links_at_their_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    root = make_target(tmp_path / "t")
    optimize(root, iterations=1, proposer="search")
    run = root / ".tracekit" / "optimizer" / "main"
    for name in ("summary.md", "progress.png", "STOP"):
        (run / name).symlink_to(outside / "victim.txt")
    assert main(["optimize", "report", str(root)]) == 0
    assert main(["optimize", "stop", str(root)]) == 0  # no loop runs: it writes nothing, through the link or not
    capsys.readouterr()
    assert snapshot(outside) == before
    assert (run / "progress.png").read_bytes()[:4] == b"\x89PNG" and "# Run main" in (run / "summary.md").read_text()
    optimize(root, iterations=2, proposer="search")  # the next loop removes the STOP link left there, never following it
    assert snapshot(outside) == before
    assert not (run / "STOP").is_symlink() and not (run / "STOP").exists()


def test_safefs_refuses_links_on_the_way_and_replaces_them_at_the_name(tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    before = snapshot(outside)
    work = tmp_path / "work"
    (work / "real").mkdir(parents=True)
    (work / "sub").symlink_to(outside)
    (work / "file.txt").symlink_to(outside / "victim.txt")
    with Dir.open(work) as d:
        with pytest.raises(UnsafePath, match="symbolic link"):
            d.write("sub/model.py", "x")
        with pytest.raises(UnsafePath, match="symbolic link"):
            d.read("sub/model.py")
        with pytest.raises(UnsafePath, match="symbolic link"):
            d.read("file.txt")
        d.write("file.txt", "mine")
        d.write("real/deeper/x.txt", "ok")
    assert (work / "file.txt").read_text() == "mine" and not (work / "file.txt").is_symlink()
    with pytest.raises(UnsafePath):
        write_file(work / "sub" / "x.txt", "x", anchor=work)
    copy_tree(work, tmp_path / "copy")
    assert (tmp_path / "copy" / "sub").is_symlink() and (tmp_path / "copy" / "real" / "deeper" / "x.txt").read_text() == "ok"
    os.mkfifo(work / "fifo")
    copy_tree(work, tmp_path / "copy2")  # a FIFO is skipped, not opened (opening it would hang)
    assert not (tmp_path / "copy2" / "fifo").exists()
    with Dir.open(work) as d, pytest.raises(UnsafePath, match="not a regular file"):
        d.read("fifo")
    assert snapshot(outside) == before


def test_private_repository_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    """git writes objects wherever --git-dir points: a link planted at repo.git must stop the run, not feed it."""
    outside = outside_folder(tmp_path)
    root = make_target(tmp_path / "t")
    s = optimize(root, iterations=1, proposer="search")
    repo = s.home / "optimizer" / "repo.git"
    shutil.copytree(repo, outside / "repo.git")
    before = snapshot(outside)
    shutil.rmtree(repo)
    repo.symlink_to(outside / "repo.git")
    with pytest.raises(OptimizerError, match="repo.git is a symbolic link"):
        optimize(root, iterations=3, proposer="search")
    assert snapshot(outside) == before
