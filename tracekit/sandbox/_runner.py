"""`run(spec)`: one sandboxed run from a fresh workspace copy to a `RunResult` and its `run` span.

    from tracekit.sandbox import RunSpec, run
    result = run(RunSpec(["python", "train.py"], workspace=Path("target"), budget_s=300, metric="val_bpb"))
    print(result.status, result.metrics, result.stderr.tail)
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path

from .._config import get_settings
from . import _cgroup, _metrics, _rundirs, _spans, _warm, _workspace
from ._backends import LOCAL_WARNING, Backend, choose, host_uid
from ._spec import RunResult, RunSpec
from ._supervise import Outcome, Supervisor

# Never copied from the host through an allowlist *pattern* (an exact name in the allowlist is honoured).
SECRETISH = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|^AWS_|^AZURE_|^GOOGLE_|^SSH_|^GPG_|"
                       r"KUBECONFIG|^DOCKER_|NETRC|^PIP_|^NPM_|^UV_|^HF_", re.IGNORECASE)
_layout: _cgroup.Layout | None = None
_layout_lock = threading.Lock()


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def cgroup_layout() -> _cgroup.Layout:
    global _layout
    with _layout_lock:
        if _layout is None:
            _layout = _cgroup.detect()
        return _layout


def build_env(spec: RunSpec, *, tmp: str, io_dir: str, run_id: str, experiment_id: str, traceparent: str | None,
              project: str, backend: str) -> dict[str, str]:
    """The candidate's whole environment: allowlisted host variables, explicit ones, then the sandbox's own."""
    env: dict[str, str] = {}
    for name, value in os.environ.items():
        for pat in spec.env_allowlist:
            if name == pat or (any(c in pat for c in "*?[") and fnmatch.fnmatchcase(name, pat) and not SECRETISH.search(name)):
                env[name] = value
                break
    pybin = str(Path(sys.executable).parent)
    path = env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    env["PATH"] = pybin + ":" + path if not path.startswith(pybin + ":") else path
    env.update({"HOME": tmp, "TMPDIR": tmp, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1"})
    if backend != "local":  # the sandbox's uid has no passwd entry; getpass.getuser() (torch caches) reads these
        env.update({"USER": "sandbox", "LOGNAME": "sandbox"})
    env.update(spec.env)
    env.update({
        "TRACEKIT_RESULT": f"{io_dir}/result.json",
        "TRACEKIT_HOME": f"{io_dir}/spool",
        "TRACEKIT_RUN_ID": run_id,
        "TRACEKIT_EXPERIMENT_ID": experiment_id,
        "TRACEKIT_PROJECT": project,
        "TRACEKIT_SANDBOX": backend,
    })
    if traceparent:  # absent only when no tracing SDK records the run span
        env["TRACEPARENT"] = traceparent
    else:
        env.pop("TRACEPARENT", None)
    return env


def run(spec: RunSpec, *, cancel: threading.Event | None = None, run_id: str | None = None) -> RunResult:
    """Run `spec` in a sandbox and return how it went. Raises SandboxError only if it cannot start.

    `cancel` (set from another thread) stops the run: SIGTERM, then SIGKILL after `grace_s`;
    the result then has status "killed".
    """
    spec.validate()
    backend = choose(spec.backend)
    if not backend.isolated:
        print(LOCAL_WARNING, file=sys.stderr, flush=True)
    run_id = run_id or new_run_id()
    experiment_id = spec.experiment_id or run_id
    settings = get_settings()
    home = Path(spec.trace_home or settings.home).resolve()
    if spec.run_dir:
        run_dir = Path(spec.run_dir).resolve()
    else:  # under the store, the oldest finished ones pruned (_rundirs)
        run_dir = _rundirs.new_run_dir(home, run_id, spec.workspace, spec.copy_exclude)
    slot = _warm.take(spec, backend)  # a sandbox of this shape started ahead (None: start cold)
    uid = slot.uid if slot is not None else host_uid(run_id) if backend.isolated else None
    held = _rundirs.hold(run_dir) if run_dir.is_dir() else None  # never pruned while it runs
    try:
        folders = _workspace.prepare(run_dir, spec.workspace, spec.copy_exclude, isolated=backend.isolated, owner=uid,
                                     warm=slot.dir if slot is not None and backend.isolated else None)
        held = held if held is not None else _rundirs.hold(run_dir)
        result = _run(spec, backend, run_id, experiment_id, settings.project, home, run_dir, uid, folders, cancel, slot)
        slot = None  # the run owned it
        return result
    finally:
        if slot is not None:  # the run never started in it
            slot.close()
        if held is not None:
            _rundirs.let_go(held)


def _run(spec: RunSpec, backend: Backend, run_id: str, experiment_id: str, project: str, home: Path, run_dir: Path,
         uid: int | None, folders: _workspace.Folders, cancel: threading.Event | None,
         slot: _warm.Slot | None) -> RunResult:
    inside = backend.inside(run_dir)
    saved = spec.to_dict()  # values of credential-like variables never reach the disk
    saved["env"] = {k: ("<redacted>" if SECRETISH.search(k) else v) for k, v in saved["env"].items()}
    (run_dir / "spec.json").write_text(json.dumps(saved, indent=1, default=str))
    before = {} if backend.isolated else _workspace.snapshot(folders.workspace)
    argv = spec.argv()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    span = _spans.RunSpan(spec.name or "sandbox.run", home, spec.traceparent, {
        "tracekit.experiment_id": experiment_id, "tracekit.run.id": run_id, "tracekit.run.backend": backend.name,
        "tracekit.run.command": json.dumps(argv)[:4096], "tracekit.run.budget_s": spec.budget_s,
    })
    try:
        env = build_env(spec, tmp=inside.tmp, io_dir=inside.io, run_id=run_id,
                        experiment_id=experiment_id, traceparent=span.traceparent, project=project,
                        backend=backend.name)
        sup = Supervisor(spec, backend, cgroup_layout(), run_id, argv, env, folders, inside, uid, cancel, slot)
        out = sup.run()
    except BaseException as exc:
        if slot is not None:
            slot.close()
        from opentelemetry.trace import Status, StatusCode

        span.span.set_status(Status(StatusCode.ERROR, f"sandbox failed to run: {exc}"))
        span.span.end()
        raise
    assert out.stdout is not None and out.stderr is not None
    io_dir = folders.io
    report = _metrics.read_result_file(io_dir, "result.json", spec.result_bytes)
    if report is None:
        report = _metrics.parse_stdout(out.stdout.text(), spec.metric)
    metric_error = _metrics.metric_problem(report, spec.metric)
    oom = out.oom or (out.limits.get("memory_enforced_by") == "rlimit_as" and out.exit_code not in (0, None)
                      and "MemoryError" in out.stderr.tail + out.stderr.head)
    failed = out.exit_code != 0 or out.signal is not None
    status = _metrics.decide_status(killed=out.reason == "killed", timed_out=out.reason == "timeout", oom=oom,
                                    output_limit=out.reason == "output_limit" or (out.disk_full and failed),
                                    exit_code=out.exit_code,
                                    signal=out.signal, metric_error=metric_error)
    changed = out.changed_files if backend.isolated else _workspace.changed(before, _workspace.snapshot(folders.workspace))
    result = RunResult(
        run_id=run_id, status=status, exit_code=out.exit_code, signal=out.signal, wall_s=out.wall_s, cpu_s=out.cpu_s,
        peak_memory_mb=out.peak_memory_mb, metrics=dict(report.metrics), metric_source=report.source,
        error=_error_text(status, out, spec, metric_error), stdout=out.stdout, stderr=out.stderr,
        changed_files=changed, workspace=folders.workspace, run_dir=run_dir, backend=backend.name, limits=out.limits,
        trace_id=span.trace_id, span_id=span.span_id, experiment_id=experiment_id, metric=spec.metric,
        started_at=started_at, notes=list(out.notes),
    )
    try:
        result.spans_ingested, problems = _spans.ingest(io_dir, home, experiment_id, spec.trace_bytes,
                                                        run_trace_id=span.trace_id, run_span_id=span.span_id)
    except Exception as exc:  # the store must not lose the run's result over a bad spool
        result.spans_ingested, problems = 0, [f"spans from the run could not be stored: {exc}"]
    result.notes.extend(f"traces: {p}" for p in problems[:20])
    if slot is not None:  # its processes ended with the run, its pipes are closed: its folder (seed/, tmp/) goes
        _warm.remove_later(slot.dir)
    elif backend.isolated:  # the first contents are the source's; the run's own were copied out
        _warm.remove_later(folders.seed, folders.tmp)
    span.finish(result, argv)
    (run_dir / "run.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _error_text(status: str, out: Outcome, spec: RunSpec, metric_error: str | None) -> str | None:
    notes = "; ".join(out.notes) if status != "ok" else ""
    why = {
        "ok": None,
        "killed": "the run was cancelled",
        "timeout": f"exceeded the {spec.budget_s:g} s budget (SIGTERM, then SIGKILL after {spec.grace_s:g} s)",
        "oom": f"exceeded the memory limit of {spec.memory_mb} MB",
        "output_limit": (f"output passed the cap of {spec.output_bytes} bytes"
                         if out.stdout is not None and (out.stdout.limit_exceeded or (out.stderr is not None and out.stderr.limit_exceeded))
                         else f"exceeded the disk limit of {spec.disk_mb} MB"),
        "crash": (f"exited with code {out.exit_code}" if out.signal is None else f"killed by signal {out.signal}"),
        "no_metric": metric_error,
    }[status]
    if status == "crash" and out.stderr is not None:
        last = [ln for ln in out.stderr.tail.splitlines() or out.stderr.head.splitlines() if ln.strip()]
        if last:
            why = f"{why}: {last[-1].strip()[:300]}"
    if notes and why:
        return f"{why} ({notes})"
    return why or (notes or None)
