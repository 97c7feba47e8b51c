"""Supervise one launched run: start it, enforce the deadline and caps, collect how it ended.

Timeline: launch the backend with the shim -> wait for `ready` -> move the run's processes into
its cgroups -> `G` -> watch (deadline, output caps, disk use, cancellation) -> on a limit: `T`
(SIGTERM everything), then after `grace_s` `K` (SIGKILL everything), and if the shim itself does
not answer, kill the process tree and the cgroup from outside -> drain output -> sweep.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SandboxError
from . import _proc
from ._backends import Backend, Launch
from ._capture import OutputPump
from ._cgroup import Layout, RunCgroup
from ._spec import CapturedOutput, RunSpec
from ._workspace import disk_usage

SHIM = str(Path(__file__).resolve().with_name("_shim.py"))


@dataclass
class Outcome:
    exit_code: int | None = None
    signal: int | None = None
    wall_s: float = 0.0
    cpu_s: float | None = None
    peak_memory_mb: float | None = None
    reason: str | None = None  # killed | timeout | output_limit (set by the supervisor)
    oom: bool = False
    notes: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    stdout: CapturedOutput | None = None
    stderr: CapturedOutput | None = None


class _StatusReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        if self.eof:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
        self.buf += data
        events = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events


class Supervisor:
    def __init__(self, spec: RunSpec, backend: Backend, layout: Layout, run_id: str, argv: list[str],
                 env: dict[str, str], workspace: Path, io_dir: Path, tmp_dir: Path, run_dir: Path,
                 cancel: threading.Event | None) -> None:
        self.spec, self.backend, self.layout, self.run_id = spec, backend, layout, run_id
        self.argv, self.env = argv, env
        self.workspace, self.io_dir, self.tmp_dir, self.run_dir = workspace, io_dir, tmp_dir, run_dir
        self.cancel = cancel or threading.Event()
        self.limit_hit = threading.Event()
        self.out = Outcome()

    # -- setup --------------------------------------------------------------------------------

    def _limits(self, cg: RunCgroup) -> tuple[dict[str, list[int]], dict[str, Any]]:
        spec = self.spec
        rl: dict[str, list[int]] = {"RLIMIT_CORE": [0, 0]}
        mem_by = procs_by = None
        if spec.memory_mb is not None:
            if cg.has("memory"):
                mem_by = f"cgroup_v{cg.version('memory')}"
            else:
                rl["RLIMIT_AS"] = [spec.memory_mb * 2**20] * 2
                mem_by = "rlimit_as"
        if spec.max_procs is not None:
            if cg.has("pids"):
                procs_by = f"cgroup_v{cg.version('pids')}"
            elif os.geteuid() != 0:
                rl["RLIMIT_NPROC"] = [spec.max_procs] * 2
                procs_by = "rlimit_nproc"
        disk_by = None
        if spec.disk_mb is not None:
            rl["RLIMIT_FSIZE"] = [spec.disk_mb * 2**20] * 2
            disk_by = ("tmpfs /tmp + " if self.backend.name != "local" else "") + "per-file rlimit + folder watch"
        limits = {
            "budget_s": spec.budget_s, "grace_s": spec.grace_s,
            "memory_mb": spec.memory_mb, "memory_enforced_by": mem_by,
            "max_procs": spec.max_procs, "procs_enforced_by": procs_by,
            "disk_mb": spec.disk_mb, "disk_enforced_by": disk_by,
            "output_bytes": spec.output_bytes, "network": spec.network,
            "isolation": self.backend.name if self.backend.isolated else "none",
        }
        return rl, limits

    def run(self) -> Outcome:
        spec = self.spec
        mem = spec.memory_mb * 2**20 if spec.memory_mb is not None else None
        layout = self.layout if spec.use_cgroups else Layout(notes=["cgroups turned off (use_cgroups=False)"])
        cg = RunCgroup.create(layout, self.run_id, mem, spec.max_procs + 16 if spec.max_procs else None)
        self.out.notes.extend(cg.notes)
        rlimits, self.out.limits = self._limits(cg)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        cfg: dict[str, Any] = {"argv": self.argv, "cwd": str(self.workspace), "ctl_fd": ctl_r, "status_fd": st_w,
                               "rlimits": rlimits}
        if spec.otlp:
            cfg["otlp"] = {"dir": str(self.io_dir / "otlp"), "max_bytes": spec.trace_bytes}
        launch = Launch(shim=[sys.executable, "-S", "-I", "-B", SHIM], shim_config=cfg, workspace=self.workspace,
                        io_dir=self.io_dir, tmp_dir=self.tmp_dir,
                        disk_bytes=spec.disk_mb * 2**20 if spec.disk_mb else None, network=spec.network,
                        ro_paths=[str(p) for p in spec.ro_paths], rw_paths=[str(p) for p in spec.rw_paths])
        pumps = [OutputPump(out_r, self.run_dir / "stdout.log", spec.output_bytes, self.limit_hit.set),
                 OutputPump(err_r, self.run_dir / "stderr.log", spec.output_bytes, self.limit_hit.set)]
        proc: subprocess.Popen[bytes] | None = None
        try:
            try:
                proc = subprocess.Popen(self.backend.argv(launch), stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                                        pass_fds=(ctl_r, st_w), env=self.env, start_new_session=True,
                                        cwd=str(self.workspace))
            except OSError as exc:
                raise SandboxError(f"cannot start the {self.backend.name} backend: {exc}") from exc
            finally:
                for fd in (out_w, err_w, ctl_r, st_w):
                    os.close(fd)
            for p in pumps:
                p.start()
            self._supervise(proc, cg, ctl_w, _StatusReader(st_r), pumps)
        finally:
            os.close(ctl_w)
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _proc.kill_tree(proc.pid)
                    proc.wait()
            cg.kill_all()
            for p in pumps:
                if p.ident is None:  # never started: close its pipe here
                    p.start()
                p.stop()
            for p in pumps:
                p.join(timeout=10)
            os.close(st_r)
            self._collect_cgroup(cg)
            cg.remove()
        self.out.stdout, self.out.stderr = pumps[0].result(), pumps[1].result()
        return self.out

    def _collect_cgroup(self, cg: RunCgroup) -> None:
        peak = cg.peak_memory_bytes()
        if peak is not None:
            self.out.peak_memory_mb = max(self.out.peak_memory_mb or 0.0, round(peak / 2**20, 3))
        if (cg.oom_kills() or 0) > 0:
            self.out.oom = True
        hits = cg.pids_limited()
        if hits:
            self.out.notes.append(f"the process cap ({self.spec.max_procs}) refused {hits} forks")

    # -- the watch loop -----------------------------------------------------------------------

    def _wait_ready(self, proc: subprocess.Popen[bytes], reader: _StatusReader, pumps: list[OutputPump]) -> bool:
        end = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < end:
            if self.cancel.is_set():
                return False
            for ev in reader.poll(0.05):
                if ev.get("ev") == "ready":
                    return True
            if reader.eof or proc.poll() is not None:
                break
        _proc.kill_tree(proc.pid)
        proc.wait()
        for p in pumps:
            p.stop()
            p.join(timeout=5)
        detail = pumps[1].result().text().strip()[-2000:] or "(no output)"
        raise SandboxError(f"the {self.backend.name} backend did not start the run (exit {proc.returncode}): {detail}")

    def _attach(self, proc: subprocess.Popen[bytes], cg: RunCgroup) -> None:
        # The shim is waiting for "G": nothing of the candidate exists yet, so moving the shim (and
        # whatever the backend runs between us and it) moves every process the run will ever have.
        pids = _proc.descendants(proc.pid) or [proc.pid]
        for pid in pids:
            _proc.set_oom_score_adj(pid, -1000)  # the OOM killer should pick the candidate, not the init
            try:
                cg.attach(pid)
            except OSError as exc:
                self.out.notes.append(f"could not move pid {pid} into the run's cgroup: {exc}")
        if cg.has("pids") and self.spec.max_procs is not None:
            cg.set_pids_max(self.spec.max_procs + len(pids))

    def _send(self, fd: int, b: bytes) -> None:
        try:
            os.write(fd, b)
        except OSError:
            pass

    def _supervise(self, proc: subprocess.Popen[bytes], cg: RunCgroup, ctl: int, reader: _StatusReader,
                   pumps: list[OutputPump]) -> None:
        spec = self.spec
        if not self._wait_ready(proc, reader, pumps):
            self.out.reason = "killed"
            self._send(ctl, b"K")
            return
        self._attach(proc, cg)
        self._send(ctl, b"G")
        t0 = time.monotonic()
        deadline = t0 + spec.budget_s
        disk_cap = spec.disk_mb * 2**20 if spec.disk_mb is not None else None
        watched = [self.workspace, self.io_dir] + ([self.tmp_dir] if self.backend.name == "local" else [])
        base_disk = disk_usage(watched) if disk_cap is not None else 0
        next_disk, term_at, kill_at = t0 + 0.1, None, None
        exit_ev: dict[str, Any] | None = None
        while exit_ev is None:
            now = time.monotonic()
            if self.out.reason is None:
                if self.cancel.is_set():
                    self.out.reason, term_at = "killed", now
                    self._send(ctl, b"T")
                elif self.limit_hit.is_set():
                    self.out.reason, kill_at = "output_limit", now
                    self._send(ctl, b"K")
                elif disk_cap is not None and now >= next_disk:
                    t = time.monotonic()
                    used = disk_usage(watched) - base_disk
                    next_disk = time.monotonic() + min(max(0.1, 20 * (time.monotonic() - t)), 2.0)
                    if used > disk_cap:
                        self.out.reason, kill_at = "output_limit", now
                        self.out.notes.append(f"the run wrote more than disk_mb={spec.disk_mb} MB to its folders")
                        self._send(ctl, b"K")
                elif now >= deadline:
                    self.out.reason, term_at = "timeout", now
                    self._send(ctl, b"T")
            elif kill_at is None and (term_at is not None and now >= term_at + spec.grace_s or self.limit_hit.is_set()):
                kill_at = now
                self._send(ctl, b"K")
            if kill_at is not None and now >= kill_at + 5:
                self.out.notes.append("the sandbox's init did not stop the run; killed it from outside")
                _proc.kill_tree(proc.pid)
                cg.kill_all()
                break
            for ev in reader.poll(0.02 if self.out.reason else 0.05):
                if ev.get("ev") == "exit":
                    exit_ev = ev
            if exit_ev is None and (reader.eof or proc.poll() is not None):
                for _ in range(40):  # the shim may have written its last line just before exiting
                    exit_ev = next((ev for ev in reader.poll(0.05) if ev.get("ev") == "exit"), None)
                    if exit_ev is not None or reader.eof:
                        break
                break
        self.out.wall_s = round(time.monotonic() - t0, 6)
        if exit_ev is not None:
            self.out.exit_code, self.out.signal = exit_ev.get("code"), exit_ev.get("signal")
            self.out.cpu_s = exit_ev.get("cpu_s")
            if exit_ev.get("maxrss_kb"):
                self.out.peak_memory_mb = round(exit_ev["maxrss_kb"] / 1024, 3)  # the cgroup's peak may raise it
            if exit_ev.get("left"):
                self.out.notes.append(f"{exit_ev['left']} leftover process(es) killed after the command ended")
        else:
            rc = proc.wait(timeout=10) if proc.poll() is None else proc.returncode
            self.out.exit_code = None
            self.out.signal = -rc if rc is not None and rc < 0 else signal.SIGKILL
            self.out.notes.append(f"the sandbox's init process ended without reporting (exit status {rc})")
