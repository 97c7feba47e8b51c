"""Supervise one launched run: start it, enforce the deadline and caps, collect how it ended.

Timeline: launch the backend with the shim -> wait for `ready` -> move the run's processes into
its cgroups -> `G` -> watch (deadline, output caps, disk use, cancellation) -> on a limit: `T`
(SIGTERM everything), then after `grace_s` `K` (SIGKILL everything), and if the shim itself does
not answer, kill the process tree and the cgroup from outside -> drain output -> sweep.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .._errors import SandboxError
from . import _proc, _seccomp, _workspace
from ._backends import SANDBOX_ROOT, Backend, Inside, Launch
from ._capture import OutputPump
from ._cgroup import Layout, RunCgroup
from ._spec import CapturedOutput, RunSpec
from ._status import StatusReader
from ._warm import SHIM, Slot, launcher_argv


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
    changed_files: list[str] = field(default_factory=list)
    host_uid: int | None = None
    disk_full: bool = False  # a capped tmpfs of the run was full at some point


class Supervisor:
    def __init__(self, spec: RunSpec, backend: Backend, layout: Layout, run_id: str, argv: list[str],
                 env: dict[str, str], folders: _workspace.Folders, inside: Inside, uid: int | None,
                 cancel: threading.Event | None, slot: Slot | None = None) -> None:
        self.spec, self.backend, self.layout, self.run_id = spec, backend, layout, run_id
        self.slot = slot  # a warm sandbox started for this shape of run (_warm), else None: start cold
        self.argv, self.env = argv, env
        self.folders, self.inside, self.uid = folders, inside, uid
        self.run_dir = folders.run_dir
        self.cancel = cancel or threading.Event()
        self.limit_hit = threading.Event()
        self.out = Outcome(host_uid=uid)
        self.view_fd: int | None = None  # the run's root, through /proc/<init>/root (isolated backends)
        self.disk_fds: list[int] = []  # its capped tmpfs (/sandbox, /tmp), watched for a full disk
        self.before: _workspace.Snapshot = {}
        self.proc: subprocess.Popen[bytes] | None = None

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
        if spec.disk_mb is not None and self.backend.isolated:
            disk_by = "tmpfs size (kernel)"
        elif spec.disk_mb is not None:
            rl["RLIMIT_FSIZE"] = [spec.disk_mb * 2**20] * 2
            disk_by = "per-file rlimit + folder watch"
        limits = {
            "budget_s": spec.budget_s, "grace_s": spec.grace_s,
            "memory_mb": spec.memory_mb, "memory_enforced_by": mem_by,
            "max_procs": spec.max_procs, "procs_enforced_by": procs_by,
            "disk_mb": spec.disk_mb, "disk_enforced_by": disk_by,
            "output_bytes": spec.output_bytes, "network": spec.network,
            "isolation": self.backend.name if self.backend.isolated else "none",
            "host_uid": self.uid if self.uid is not None else os.geteuid(),
            "seccomp": self.backend.isolated and _seccomp.program() is not None,
        }
        return rl, limits

    def run(self) -> Outcome:
        spec = self.spec
        mem = spec.memory_mb * 2**20 if spec.memory_mb is not None else None
        layout = self.layout if spec.use_cgroups else Layout(notes=["cgroups turned off (use_cgroups=False)"])
        cg = RunCgroup.create(layout, self.run_id, mem, spec.max_procs + 16 if spec.max_procs else None)
        self.out.notes.extend(cg.notes)
        rlimits, self.out.limits = self._limits(cg)
        self.out.limits["start"] = "warm" if self.slot is not None else "cold"  # sandbox/_warm.py
        own: dict[str, Any] = {"argv": self.argv, "cwd": self.inside.workspace, "rlimits": rlimits}
        if spec.otlp:
            own["otlp"] = {"dir": self.inside.io + "/otlp", "max_bytes": spec.trace_bytes}
        if self.slot is not None:
            proc = self.slot.proc
            self.slot.handed_over = True  # its pipes are closed below, as a cold start's are
            out_r, err_r, ctl_w, st_r = self.slot.out_r, self.slot.err_r, self.slot.ctl_w, self.slot.st_r
        else:
            try:
                out_r, err_r, ctl_w, st_r = self._start_cold(own)
            except BaseException:
                cg.remove()
                raise
            assert self.proc is not None
            proc = self.proc
        pumps = [OutputPump(out_r, self.run_dir / "stdout.log", spec.output_bytes, self.limit_hit.set),
                 OutputPump(err_r, self.run_dir / "stderr.log", spec.output_bytes, self.limit_hit.set)]
        try:
            if self.slot is not None:
                self._configure(dict(own, env=self.env))
            for p in pumps:
                p.start()
            self._supervise(proc, cg, ctl_w, StatusReader(st_r), pumps)
        finally:
            os.close(ctl_w)
            for held in [self.view_fd, *self.disk_fds]:
                if held is not None:
                    os.close(held)
            try:
                _proc.wait(proc, 5)
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

    def _start_cold(self, own: dict[str, Any]) -> tuple[int, int, int, int]:
        """Launch the backend with the shim for this run (no warm sandbox): its pipes, `self.proc` set."""
        spec = self.spec
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        seccomp_fd = _seccomp.write_to_fd() if self.backend.isolated else None
        launch = Launch(shim=[sys.executable, "-S", "-I", "-B", SHIM], shim_config=dict(own, ctl_fd=ctl_r, status_fd=st_w),
                        run_dir=self.run_dir, seed=self.folders.seed, tmp_dir=self.folders.tmp,
                        disk_bytes=spec.disk_mb * 2**20 if spec.disk_mb else None, network=spec.network,
                        host_uid=self.uid, seccomp_fd=seccomp_fd,
                        ro_paths=[str(p) for p in spec.ro_paths], rw_paths=[str(p) for p in spec.rw_paths])
        passed = tuple(fd for fd in (ctl_r, st_w, seccomp_fd) if fd is not None)
        try:
            self.proc = subprocess.Popen(launcher_argv(self.backend, launch), stdin=subprocess.DEVNULL, stdout=out_w,
                                         stderr=err_w, pass_fds=passed, env=self.env, start_new_session=True,
                                         cwd=str(self.run_dir))
        except OSError as exc:
            for fd in (out_r, err_r, ctl_w, st_r):
                os.close(fd)
            raise SandboxError(f"cannot start the {self.backend.name} backend: {exc}") from exc
        finally:
            for fd in (out_w, err_w, *passed):
                os.close(fd)
        return out_r, err_r, ctl_w, st_r

    def _configure(self, own: dict[str, Any]) -> None:
        """Hand a warm sandbox its run's settings (`_shim.await_config`)."""
        data = json.dumps(own, separators=(",", ":")).encode()
        view = memoryview(b"C" + struct.pack(">I", len(data)) + data)
        assert self.slot is not None
        try:
            while view:
                view = view[os.write(self.slot.ctl_w, view):]
        except OSError as exc:
            raise SandboxError(f"the warm {self.backend.name} sandbox went away before its run: {exc}") from exc

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

    def _wait_ready(self, proc: subprocess.Popen[bytes], reader: StatusReader, pumps: list[OutputPump]) -> bool:
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
        if self.slot is not None:  # listed (and their OOM score set) when it was started
            pids = self.slot.pids
        else:
            pids = _proc.descendants(proc.pid) or [proc.pid]
            for pid in pids:
                _proc.set_oom_score_adj(pid, -1000)  # the OOM killer should pick the candidate, not the init
        for pid in pids:
            try:
                cg.attach(pid)
            except OSError as exc:
                self.out.notes.append(f"could not move pid {pid} into the run's cgroup: {exc}")
        if cg.has("pids") and self.spec.max_procs is not None:
            cg.set_pids_max(self.spec.max_procs + len(pids))
        if self.backend.isolated:
            self._open_view(pids)

    def _open_view(self, pids: list[int]) -> None:
        """Hold the run's root (through its init) and list the workspace before the candidate starts."""
        shim = next((p for p in pids if SHIM in _proc.cmdline(p)), None)
        try:
            if shim is None:
                raise OSError(3, "the sandbox's init process was not found")
            self.view_fd = os.open(f"/proc/{shim}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            ws = _workspace.open_dir(self.view_fd, self.inside.workspace)
            try:
                self.before = _workspace.snapshot_fd(ws)
            finally:
                os.close(ws)
            if self.spec.disk_mb is not None:
                self.disk_fds = [_workspace.open_dir(self.view_fd, p) for p in (SANDBOX_ROOT, self.inside.tmp)]
        except OSError as exc:
            raise SandboxError(f"cannot read the run's file system through its init process: {exc}") from exc

    def _check_disk(self) -> None:
        for fd in self.disk_fds:
            st = os.fstatvfs(fd)
            if st.f_bavail * st.f_frsize < 65536:
                self.out.disk_full = True

    def _collect_view(self) -> None:
        """After every process of the run ended: list what changed, copy workspace/ and io/ out."""
        assert self.view_fd is not None
        self._check_disk()
        if self.out.disk_full:
            self.out.notes.append(f"the run filled its disk (disk_mb={self.spec.disk_mb})")
        cap = (self.spec.disk_mb or 1024) * 2**20
        for rel, dest, links in ((self.inside.workspace, self.folders.workspace, True), (self.inside.io, self.folders.io, False)):
            try:
                fd = _workspace.open_dir(self.view_fd, rel)
            except OSError as exc:
                self.out.notes.append(f"{rel} was replaced or removed by the run ({exc.strerror}); nothing copied from it")
                dest.mkdir(exist_ok=True)
                continue
            try:
                if dest == self.folders.workspace:
                    self.out.changed_files = _workspace.changed(self.before, _workspace.snapshot_fd(fd))
                self.out.notes.extend(_workspace.copy_out(fd, dest, cap, symlinks=links))
            finally:
                os.close(fd)

    def _send(self, fd: int, b: bytes) -> None:
        try:
            os.write(fd, b)
        except OSError:
            pass

    def _supervise(self, proc: subprocess.Popen[bytes], cg: RunCgroup, ctl: int, reader: StatusReader,
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
        if self.backend.isolated:
            disk_cap = None  # the kernel caps the run's tmpfs; nothing to watch
        watched = [self.folders.workspace, self.folders.io, self.folders.tmp]
        base_disk = _workspace.disk_usage(watched) if disk_cap is not None else 0
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
                    used = _workspace.disk_usage(watched) - base_disk
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
            if self.disk_fds and not self.out.disk_full:
                self._check_disk()
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
        if self.view_fd is not None:
            self._collect_view()
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
