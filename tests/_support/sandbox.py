"""Helpers for the sandbox tests: candidates as Python snippets, a unique marker per case, leftovers.

Every candidate gets a marker string in its argv (`tkmark-<hex>`); processes it forks keep that
argv, so scanning /proc for the marker finds anything the run left behind.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tracekit.sandbox import RunSpec
from tracekit.sandbox._backends import probe
from tracekit.sandbox._proc import cmdline

ISOLATED = [b for b in ("bwrap", "unshare") if probe(b) is None]
needs_bwrap = pytest.mark.skipif(probe("bwrap") is not None, reason=f"bwrap unusable here: {probe('bwrap')}")
needs_isolation = pytest.mark.skipif(not ISOLATED, reason="neither bwrap nor unshare works here")


def marker() -> str:
    return "tkmark-" + uuid.uuid4().hex[:12]


def py(code: str, mark: str, *args: str) -> list[str]:
    """argv running `code` with the interpreter; sys.argv[1] is the marker."""
    return [sys.executable, "-c", textwrap.dedent(code), mark, *args]


def spec(tmp_path: Path, command: Any, **kw: Any) -> RunSpec:
    """A RunSpec with small limits, its run folder and store under `tmp_path`."""
    defaults: dict[str, Any] = dict(budget_s=20.0, grace_s=1.0, memory_mb=512, max_procs=64, disk_mb=64,
                                    output_bytes=1 << 20, run_dir=tmp_path / f"run-{uuid.uuid4().hex[:8]}",
                                    trace_home=tmp_path / "home")
    defaults.update(kw)
    return RunSpec(command, **defaults)


def procs_with(mark: str) -> list[int]:
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me and any(mark in a for a in cmdline(int(name))):
            try:
                state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                out.append(int(name))
    return out


def assert_no_leftovers(mark: str, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while True:
        left = procs_with(mark)
        if not left:
            return
        if time.monotonic() > end:
            details = {p: cmdline(p)[:4] for p in left}
            for p in left:  # do not leave them to the next test either
                try:
                    os.kill(p, 9)
                except OSError:
                    pass
            raise AssertionError(f"processes left behind: {details}")
        time.sleep(0.05)


def wait_for(mark: str, timeout: float = 20.0, count: int = 1) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = procs_with(mark)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no process with {mark} appeared within {timeout} s")
