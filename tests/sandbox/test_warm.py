"""Warm sandboxes (sandbox/_warm.py): started ahead, each serves one run, and a run cannot tell.

A warm start skips the launch chain; the world the candidate gets must be the one a cold start
builds (identity, capabilities, seccomp, mounts, limits, environment, folders), nothing of an
earlier run may reach a later one, and a warm sandbox nobody takes must go away.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tracekit.sandbox import run
from tracekit.sandbox._backends import choose, python_paths
from tracekit.sandbox._spec import RunResult, RunSpec
from tracekit.sandbox._warm import POOL, Pool, shape_of, start

from tests._support.sandbox import ISOLATED, needs_isolation, py, spec

pytestmark = needs_isolation
# Mount points the view creates in /tmp when the interpreter or this checkout lives under it (a clone in /tmp).
BOUND_IN_TMP = sorted({Path(p).relative_to("/tmp").parts[0] for p in python_paths() if p.startswith("/tmp/")})

# What the candidate can observe of its world, as one JSON line (host-specific numbers left out).
PROBE = """
    import json, os, resource, socket, sys
    def status():
        out = {}
        for line in open('/proc/self/status'):
            k, _, v = line.partition(':')
            if k in ('Uid', 'Gid', 'Groups', 'CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs', 'Seccomp'):
                out[k] = v.split()
        return out
    mounts = sorted(line.split()[4] + ' ' + line.split()[5].split(',')[0] for line in open('/proc/self/mountinfo'))
    limits = {n: resource.getrlimit(getattr(resource, n)) for n in ('RLIMIT_CORE', 'RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_FSIZE')}
    env = sorted(k for k in os.environ if k not in ('TRACEKIT_RUN_ID', 'TRACEPARENT'))
    print(json.dumps({'status': status(), 'mounts': mounts, 'limits': limits, 'env': env, 'cwd': os.getcwd(),
                      'host': socket.gethostname(), 'pid': os.getpid(), 'ws': sorted(os.listdir('.')),
                      'tmp': sorted(os.listdir('/tmp')), 'pids': sorted(p for p in os.listdir('/proc') if p.isdigit())}))
    open('/tmp/left-by-' + sys.argv[1], 'w').write('x')
    open('left-in-workspace', 'w').write('x')
"""


def _probe(tmp_path: Path, backend: str, warm: bool, mark: str, monkeypatch: pytest.MonkeyPatch) -> tuple[RunResult, dict]:
    monkeypatch.setenv("TRACEKIT_SANDBOX_WARM", "1" if warm else "0")
    ws = tmp_path / f"ws-{mark}"
    ws.mkdir(exist_ok=True)
    (ws / "train.py").write_text("print('METRIC x=1')\n")
    res = run(spec(tmp_path, py(PROBE, mark), backend=backend, workspace=ws, env={"TRACEKIT_SEED": "7"}))
    assert res.status in ("ok", "no_metric"), res.error
    line = next(ln for ln in res.stdout.text().splitlines() if ln.startswith("{"))
    return res, json.loads(line)


def _warm_run(tmp_path: Path, backend: str, mark: str, monkeypatch: pytest.MonkeyPatch) -> tuple[RunResult, dict]:
    """A run that starts warm: the first of its shape starts the next one, which this one takes."""
    _probe(tmp_path, backend, True, mark + "-first", monkeypatch)
    POOL.drain()
    for _ in range(100):  # the next sandbox of the shape reports `warm` within a few seconds
        if any(s.shape == shape_of(spec(tmp_path, ["true"], backend=backend), choose(backend)) for s in POOL.idle):
            break
        time.sleep(0.1)
    res, seen = _probe(tmp_path, backend, True, mark, monkeypatch)
    assert res.limits["start"] == "warm"
    return res, seen


@pytest.mark.parametrize("backend", ISOLATED)
def test_a_warm_start_gives_the_run_the_world_a_cold_start_gives(tmp_path: Path, backend: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cold_res, cold = _probe(tmp_path, backend, False, "cold", monkeypatch)
    assert cold_res.limits["start"] == "cold"
    warm_res, warm = _warm_run(tmp_path, backend, "warm", monkeypatch)
    for seen, res in ((warm, warm_res), (cold, cold_res)):  # the unshare backend shows the host uid itself
        for key in ("Uid", "Gid"):
            seen["status"][key] = ["host uid" if int(v) == res.limits["host_uid"] else v for v in seen["status"][key]]
    assert set(warm["env"]) ^ set(cold["env"]) == set()
    assert warm == cold  # identity, capabilities, seccomp, mounts, rlimits, environment names, folders, processes
    assert warm["status"]["Seccomp"] == ["2"] and warm["status"]["NoNewPrivs"] == ["1"]
    assert warm["ws"] == ["train.py"] and warm["tmp"] == BOUND_IN_TMP  # the workspace copied in; /tmp fresh
    assert warm_res.changed_files == cold_res.changed_files == ["left-in-workspace"]
    if os.geteuid() == 0:  # each sandbox its own unprivileged host uid
        assert warm_res.limits["host_uid"] != cold_res.limits["host_uid"]
        assert warm_res.limits["host_uid"] >= 1_000_000_000


@pytest.mark.parametrize("backend", ISOLATED)
def test_nothing_of_a_run_reaches_the_next_one(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs back to back in warm sandboxes: a fresh /tmp, workspace and process table every time."""
    seen = [_warm_run(tmp_path, backend, f"r{i}", monkeypatch)[1] for i in range(2)]
    for s in seen:
        assert s["tmp"] == BOUND_IN_TMP and s["ws"] == ["train.py"]
        assert s["pids"] == ["1", "2"]  # the init and the probe: no process of another run


@pytest.mark.parametrize("backend", ISOLATED)
def test_a_warm_sandbox_that_died_is_not_used(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm_run(tmp_path, backend, "before", monkeypatch)
    POOL.drain()
    for s in list(POOL.idle):
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.proc.wait()
    res, _ = _probe(tmp_path, backend, True, "after", monkeypatch)
    assert res.status in ("ok", "no_metric") and res.limits["start"] == "cold"


@pytest.mark.parametrize("backend", ISOLATED)
def test_an_unused_warm_sandbox_goes_away_and_nothing_starts_when_turned_off(tmp_path: Path, backend: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    b = choose(backend)
    shape = shape_of(RunSpec(["true"], backend=backend, disk_mb=64), b)
    pool = Pool()
    slot = start(shape, b)
    pids = [slot.proc.pid]
    assert slot.alive() and slot.dir.is_dir()
    pool.idle.append(slot)
    pool.close()  # what happens at exit
    assert slot.proc.poll() is not None and not slot.dir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    monkeypatch.setenv("TRACEKIT_SANDBOX_WARM", "0")
    POOL.drain()
    before = (list(POOL.idle), dict(POOL.starting))
    res = run(spec(tmp_path, ["true"], backend=backend))
    POOL.drain()
    assert res.limits["start"] == "cold" and (list(POOL.idle), dict(POOL.starting)) == before


@pytest.mark.parametrize("backend", ISOLATED)
def test_a_read_only_file_replaced_since_the_sandbox_started_is_seen_new(tmp_path: Path, backend: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm sandbox bound its ro_paths when it started: one whose file was renamed over is not used."""
    monkeypatch.setenv("TRACEKIT_SANDBOX_WARM", "1")
    case = tmp_path / "case.json"
    case.write_text("case-1")
    read = py("import sys; print(open(sys.argv[2]).read())", "ro", str(case))
    first = run(spec(tmp_path, read, backend=backend, ro_paths=[case]))
    POOL.drain()
    (tmp_path / "case.new").write_text("case-2")
    os.rename(tmp_path / "case.new", case)  # how a harness writes its next case atomically
    second = run(spec(tmp_path, read, backend=backend, ro_paths=[case]))
    assert first.stdout.text().strip() == "case-1" and second.stdout.text().strip() == "case-2"
    assert second.limits["start"] == "cold"  # the sandbox started for case-1's file was not taken
    third = run(spec(tmp_path, read, backend=backend, ro_paths=[case]))
    assert third.stdout.text().strip() == "case-2"


def test_the_local_backend_is_never_warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_SANDBOX_WARM", "1")
    for _ in range(2):
        res = run(spec(tmp_path, ["true"], backend="local"))
        POOL.drain()
        assert res.limits["start"] == "cold" and res.limits["host_uid"] == os.geteuid()
    assert not any(s.shape.backend == "local" for s in POOL.idle)


@pytest.mark.skipif(os.geteuid() != 0, reason="TRACEKIT_SANDBOX_UID is read only by a root harness")
def test_a_sandbox_that_cannot_start_warm_leaves_the_pool_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ISOLATED[0]
    monkeypatch.setenv("TRACEKIT_SANDBOX_WARM", "1")
    monkeypatch.setenv("TRACEKIT_SANDBOX_UID", "1900000001")
    run(spec(tmp_path, ["true"], backend=backend))
    monkeypatch.setenv("TRACEKIT_SANDBOX_UID", "0")  # refused by host_uid: the next warm start fails in the pool's thread
    POOL.take(shape_of(spec(tmp_path, ["true"], backend=backend), choose(backend)), choose(backend))
    POOL.drain()
    monkeypatch.delenv("TRACEKIT_SANDBOX_UID")
    _warm_run(tmp_path, backend, "after-failure", monkeypatch)  # the thread lived on: runs start warm again
    assert POOL.starter is not None and POOL.starter.is_alive()


@pytest.mark.parametrize("backend", ISOLATED)
def test_a_forked_child_leaves_the_parents_sandboxes_alone(tmp_path: Path, backend: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _warm_run(tmp_path, backend, "parent", monkeypatch)
    POOL.drain()
    ours = [s for s in POOL.idle if s.shape.backend == backend]
    assert ours
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child exits the way a multiprocessing worker does: atexit handlers run
        import atexit

        atexit._run_exitfuncs()
        os._exit(0 if not POOL.idle else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and time.monotonic() - t0 < 10
    assert all(s.alive() and s.dir.is_dir() for s in ours)  # not closed, not removed by the child
    res, _ = _probe(tmp_path, backend, True, "parent-again", monkeypatch)
    assert res.limits["start"] == "warm"


def test_the_run_gets_the_cpus_and_niceness_of_the_thread_that_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ISOLATED[0]
    _warm_run(tmp_path, backend, "affinity-before", monkeypatch)
    POOL.drain()
    cpus = sorted(os.sched_getaffinity(0))
    out: list[RunResult] = []

    def pinned() -> None:  # affinity and niceness are per thread on Linux
        os.sched_setaffinity(0, {cpus[0]})
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 3)
        out.append(run(spec(tmp_path, py("import os; print(sorted(os.sched_getaffinity(0)), os.nice(0))", "pin"),
                            backend=backend)))

    import threading

    t = threading.Thread(target=pinned)
    t.start()
    t.join(60)
    assert out and out[0].limits["start"] == "warm"
    assert out[0].stdout.text().strip() == f"[{cpus[0]}] {os.getpriority(os.PRIO_PROCESS, 0) + 3}"


def test_an_idle_sandbox_goes_away_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ISOLATED[0]
    _warm_run(tmp_path, backend, "idle", monkeypatch)
    POOL.drain()
    idle = list(POOL.idle)
    assert idle
    monkeypatch.setattr("tracekit.sandbox._warm.IDLE_S", 0.2)
    time.sleep(0.3)
    POOL.drain()  # the pool's thread wakes for the job, then expires what idled too long
    POOL.drain()
    assert not POOL.idle and all(s.proc.poll() is not None and not s.dir.exists() for s in idle)
