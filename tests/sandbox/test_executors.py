"""Executors: the local bounded pool (submit, as_completed, cancel) and Ray on a local instance (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tracekit import Store
from tracekit.sandbox import LocalExecutor, RunSpec
from tracekit.sandbox._executors import LocalHandle

from tests._support.sandbox import assert_no_leftovers, marker, py, spec

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(600)"


def wait_started(s: RunSpec, timeout: float = 30) -> None:
    log = Path(s.run_dir or "") / "stdout.log"
    end = time.monotonic() + timeout
    while not (log.exists() and "up" in log.read_text()):
        assert time.monotonic() < end, "the run never started"
        time.sleep(0.05)


def test_local_executor_runs_and_yields_as_completed(tmp_path: Path) -> None:
    with LocalExecutor(max_workers=2) as ex:
        slow = ex.submit(spec(tmp_path, py("import time\ntime.sleep(1.0)\nprint('METRIC n=1')", marker())))
        fast = ex.submit(spec(tmp_path, py("print('METRIC n=2')", marker())))
        order = [h.run_id for h in ex.as_completed([slow, fast], timeout=60)]
        assert order == [fast.run_id, slow.run_id]
        assert slow.result().metrics == {"n": 1.0} and fast.result().metrics == {"n": 2.0}
        assert slow.done() and slow.result().run_id == slow.run_id
        assert [r.status for r in ex.map([spec(tmp_path, py("print('METRIC n=3')", marker()))])] == ["ok"]


def test_cancel_running_and_queued_runs(tmp_path: Path) -> None:
    m1, m2 = marker(), marker()
    ex = LocalExecutor(max_workers=1)
    try:
        running = ex.submit(spec(tmp_path, py(SLEEPER, m1), budget_s=300, grace_s=1))
        queued = ex.submit(spec(tmp_path, py(SLEEPER, m2), budget_s=300))
        wait_started(running.spec)
        assert not queued.done()
        t = time.monotonic()
        ex.cancel(queued)
        ex.cancel(running)
        res = running.result(timeout=30)
        assert res.status == "killed" and res.error == "the run was cancelled"
        assert time.monotonic() - t < 10
        q = queued.result()
        assert q.status == "killed" and "before it started" in (q.error or "")
        assert q.run_id == queued.run_id
    finally:
        ex.close()
    assert_no_leftovers(m1)
    assert_no_leftovers(m2)


def test_close_cancels_everything(tmp_path: Path) -> None:
    m = marker()
    ex = LocalExecutor(max_workers=1)
    h = ex.submit(spec(tmp_path, py(SLEEPER, m), budget_s=300, grace_s=0.5))
    wait_started(h.spec)
    ex.close()
    assert h.result().status == "killed"
    assert_no_leftovers(m)
    with pytest.raises(Exception, match="closed"):
        ex.submit(spec(tmp_path, py("pass", marker())))


def test_submit_pins_parent_and_store(tmp_path: Path, home: Path) -> None:
    import tracekit

    with LocalExecutor(max_workers=1) as ex, tracekit.span("loop", kind="chain") as outer:
        h = ex.submit(RunSpec(py("print('METRIC a=1')", marker()), run_dir=tmp_path / "r", budget_s=20))
        assert isinstance(h, LocalHandle)
        assert h.spec.traceparent is not None and outer.trace_id in h.spec.traceparent
        assert h.spec.trace_home == home.resolve()
        res = h.result()
    assert res.trace_id == outer.trace_id and res.status == "ok"


@pytest.fixture(scope="module")
def ray_instance():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_runs_the_same_sandbox(tmp_path: Path, home: Path, ray_instance: object) -> None:
    from tracekit.sandbox import RayExecutor

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(
        "import sys, tracekit\n"
        "with tracekit.span('work', kind='chain'):\n"
        "    pass\n"
        "print(f'METRIC score={sys.argv[1]}')\n"
    )
    ex = RayExecutor(max_workers=2)
    try:
        handles = [ex.submit(spec(tmp_path, ["python", "train.py", str(i)], workspace=ws, experiment_id=f"ray-{i}",
                                  trace_home=home)) for i in range(3)]
        shipped = RayExecutor(max_workers=1, ship_workspace=True)
        try:
            h_ship = shipped.submit(spec(tmp_path, ["python", "train.py", "7"], workspace=ws, experiment_id="ray-ship",
                                         trace_home=home))
            assert h_ship.result(timeout=120).metrics == {"score": 7.0}
        finally:
            shipped.close()
        done = list(ex.as_completed(handles, timeout=120))
        assert len(done) == 3
        results = [h.result() for h in handles]
        assert [r.status for r in results] == ["ok"] * 3, [r.error for r in results]
        assert [r.metrics["score"] for r in results] == [0.0, 1.0, 2.0]
        rows = Store(home).read("spans").to_pylist()
        assert {r["experiment_id"] for r in rows if r["name"] == "work"} == {"ray-0", "ray-1", "ray-2", "ray-ship"}
        m = marker()
        long = ex.submit(spec(tmp_path, py(SLEEPER, m), budget_s=300, grace_s=1))
        wait_started(long.spec, timeout=120)
        ex.cancel(long)
        assert long.result(timeout=60).status == "killed"
        assert_no_leftovers(m, timeout=10)
    finally:
        ex.close()
