"""cgroup detection (v1, v2, hybrid; synthetic layouts), real per-run groups on this machine, and check()."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tracekit.sandbox import check
from tracekit.sandbox._cgroup import RunCgroup, detect

V1_MOUNTS = """\
31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / {root}/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTS = "30 23 0:27 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def _layout(tmp_path: Path, mounts: str, own: str) -> tuple[str, str]:
    (tmp_path / "mountinfo").write_text(mounts.format(root=tmp_path / "cg"))
    (tmp_path / "cgroup").write_text(own)
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")


def test_detect_hybrid_v1_prefers_v1_when_v2_lacks_the_controllers(tmp_path: Path) -> None:
    (tmp_path / "cg" / "memory" / "job" / "42").mkdir(parents=True)
    (tmp_path / "cg" / "pids").mkdir(parents=True)
    (tmp_path / "cg" / "unified").mkdir(parents=True)
    (tmp_path / "cg" / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    layout = detect(*_layout(tmp_path, V1_MOUNTS, "8:pids:/\n4:memory:/job/42\n0::/\n"))
    assert layout.slots["memory"].version == 1 and layout.slots["memory"].base == tmp_path / "cg" / "memory" / "job" / "42"
    assert layout.slots["pids"].version == 1 and layout.slots["pids"].base == tmp_path / "cg" / "pids"


def test_detect_pure_v2(tmp_path: Path) -> None:
    own = tmp_path / "cg" / "user.slice" / "me"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    layout = detect(*_layout(tmp_path, V2_MOUNTS, "0::/user.slice/me\n"))
    assert {c: (s.version, s.base) for c, s in layout.slots.items()} == {"memory": (2, own), "pids": (2, own)}


def test_detect_v2_without_controllers_reports_why(tmp_path: Path) -> None:
    own = tmp_path / "cg" / "me"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu\n")
    layout = detect(*_layout(tmp_path, V2_MOUNTS, "0::/me\n"))
    assert layout.slots == {} and any("memory" in n for n in layout.notes)


@pytest.mark.skipif(not detect().slots, reason="no usable cgroup controllers here")
def test_real_run_cgroup_limits_kills_and_removes() -> None:
    layout = detect()
    cg = RunCgroup.create(layout, f"test-{os.getpid()}", 64 * 2**20, 16)
    assert not cg.notes, cg.notes
    folders = [f for _, f in cg.dirs.values()]
    try:
        child = subprocess.Popen(["sleep", "600"])
        cg.attach(child.pid)
        assert cg.procs() == {child.pid}
        assert cg.kill_all(timeout=5)
        assert child.wait(timeout=5) == -9
        assert cg.peak_memory_bytes() is not None and cg.oom_kills() == 0 and cg.pids_limited() == 0
    finally:
        cg.remove()
    assert not any(f.exists() for f in folders)


def test_check_reports_backends_limits_and_a_probe_run() -> None:
    report = check()
    assert set(report.backends) == {"bwrap", "unshare", "local"} and report.backends["local"] is None
    assert report.auto in report.backends and report.backends[report.auto] is None
    assert set(report.cgroups) == {"memory", "pids"}
    assert report.probe_run is not None and report.probe_run["status"] == "ok"
    assert "auto picks: " + report.auto in report.summary()


def test_v2_run_groups_go_beside_a_group_that_cannot_delegate(tmp_path: Path) -> None:
    parent = tmp_path / "cg" / "slice"
    own = parent / "harness"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("memory pids\n")
    (own / "cgroup.subtree_control").mkdir()  # stands for "writing +memory here fails" (EBUSY on a real v2)
    (parent / "cgroup.subtree_control").write_text("memory pids\n")
    layout = detect(*_layout(tmp_path, V2_MOUNTS, "0::/slice/harness\n"))
    cg = RunCgroup.create(layout, "r1", 64 * 2**20, 32)
    assert cg.dirs == {"memory": (2, parent / "tracekit-r1"), "pids": (2, parent / "tracekit-r1")}
    assert (parent / "tracekit-r1" / "memory.max").read_text() == str(64 * 2**20)
    assert (parent / "tracekit-r1" / "pids.max").read_text() == "32"


def test_rlimit_fallback_without_cgroups(tmp_path: Path) -> None:
    from tracekit.sandbox import run

    from tests._support.sandbox import assert_no_leftovers, marker, py, spec

    m = marker()
    res = run(spec(tmp_path, py("x = []\nwhile True:\n    x.append(bytearray(16 << 20))", m), memory_mb=256,
                   use_cgroups=False))
    assert res.limits["memory_enforced_by"] == "rlimit_as"
    assert res.limits["procs_enforced_by"] == ("rlimit_nproc" if os.geteuid() != 0 else None)
    assert res.status == "oom", (res.error, res.stderr.tail)
    assert "MemoryError" in res.stderr.text()
    assert_no_leftovers(m)
