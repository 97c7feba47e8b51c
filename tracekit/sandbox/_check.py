"""`check()`: which backends and which limits work on this machine (each one actually tried).

    from tracekit.sandbox import check
    print(check().summary())

The probe run is a real sandboxed run in the backend `auto` picks; from inside it reports what
a candidate would meet (its seccomp mode, whether `/proc/sys` takes a write, whether keyring calls
answer), and the harness adds what it set up (the host uid the run mapped to, the disk cap).
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _backends, _cgroup, _seccomp

_PROBE = textwrap.dedent("""
    import ctypes, errno, os, platform
    status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
    print('CHECK seccomp=' + status.get('Seccomp', '?').strip())
    try:
        os.close(os.open('/proc/sys/kernel/panic', os.O_WRONLY))
        print('CHECK proc_sys=writable')
    except OSError:
        print('CHECK proc_sys=read-only')
    nr = {'x86_64': 250, 'aarch64': 219}.get(platform.machine())
    if nr is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(nr, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
        print('CHECK keyctl=' + ('allowed' if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')))
    print('METRIC probe=1')
""")


@dataclass
class CheckReport:
    backends: dict[str, str | None] = field(default_factory=dict)  # name -> None (works) or why not
    auto: str = "local"
    cgroups: dict[str, str] = field(default_factory=dict)  # controller -> how it is enforced (or why not)
    rlimits: dict[str, str] = field(default_factory=dict)  # fallbacks when a cgroup controller is missing
    isolation: dict[str, str] = field(default_factory=dict)  # uid, seccomp, proc_sys, keyring, disk
    euid: int = 0
    probe_run: dict[str, Any] | None = None  # a real run in the auto backend

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = ["backends:"]
        for name, why in self.backends.items():
            lines.append(f"  {name:8} {'ok' if why is None else 'unavailable: ' + why}")
        lines.append(f"auto picks: {self.auto}" + ("   (NOT isolation)" if self.auto == "local" else ""))
        lines.append("limits:")
        for c, how in self.cgroups.items():
            lines.append(f"  {c:8} {how}")
        for r, how in self.rlimits.items():
            lines.append(f"  {r:8} without cgroups: {how}")
        labels = {"uid": "uid", "seccomp": "seccomp", "proc_sys": "/proc/sys", "keyring": "keyring", "disk": "disk"}
        lines.append(f"isolation of a run ({self.auto}; harness euid {self.euid}):")
        for key, label in labels.items():
            if key in self.isolation:
                lines.append(f"  {label:10} {self.isolation[key]}")
        if self.probe_run:
            p = self.probe_run
            lines.append(f"probe run ({p['backend']}): {p['status']} in {p['wall_s']:.3f} s"
                         + (f" - {p['error']}" if p.get("error") else ""))
        return "\n".join(lines)


def check(probe_run: bool = True) -> CheckReport:
    """Try each backend, create and remove a cgroup per controller, and (optionally) run a probe."""
    report = CheckReport(euid=os.geteuid())
    for name in _backends.BACKEND_TYPES:
        report.backends[name] = _backends.probe(name)
    report.auto = _backends.choose("auto").name
    layout = _cgroup.detect()
    for c in _cgroup.CONTROLLERS:
        slot = layout.slots.get(c)
        if slot is None:
            report.cgroups[c] = "unavailable (" + "; ".join(n for n in layout.notes if c in n) + ")"
            continue
        cg = _cgroup.RunCgroup.create(layout, f"check-{os.getpid()}", 64 * 2**20 if c == "memory" else None,
                                      64 if c == "pids" else None)
        if cg.has(c):
            report.cgroups[c] = f"cgroup v{slot.version} ({slot.base})"
        else:
            report.cgroups[c] = "cgroup not writable: " + "; ".join(cg.notes)
        cg.remove()
    report.rlimits["memory"] = "RLIMIT_AS fallback (breaks CUDA/JAX address-space reservations)"
    report.rlimits["procs"] = ("RLIMIT_NPROC fallback" if report.euid != 0
                               else "RLIMIT_NPROC fallback does not work as root (the kernel ignores it)")
    sc = _seccomp.describe()
    if probe_run:
        from ._runner import run
        from ._spec import RunSpec

        with tempfile.TemporaryDirectory(prefix="tracekit-check-") as tmp:
            res = run(RunSpec([sys.executable, "-c", _PROBE], budget_s=30, memory_mb=256, max_procs=32, disk_mb=16,
                              otlp=False, run_dir=Path(tmp) / "run", trace_home=Path(tmp) / "home", name="sandbox.check"))
            report.probe_run = {"backend": res.backend, "status": res.status, "wall_s": res.wall_s,
                                "error": res.error, "limits": res.limits}
            facts = dict(line[6:].split("=", 1) for line in res.stdout.text().splitlines() if line.startswith("CHECK "))
        report.isolation = _isolation(res.backend, res.limits, facts, sc)
    elif not sc["available"]:
        report.isolation["seccomp"] = "off: " + sc["why"]
    return report


def _isolation(backend: str, limits: dict[str, Any], facts: dict[str, str], sc: dict[str, Any]) -> dict[str, str]:
    uid = limits.get("host_uid")
    if backend == "local":
        who = f"the harness's own uid {uid} (NOT isolated)"
    elif os.geteuid() == 0:
        who = f"unprivileged host uid {uid} (uid 1000 inside); never root"
    else:
        who = f"the harness's uid {uid} (uid 1000 inside)"
    if facts.get("seccomp") == "2":
        seccomp = f"on: {len(sc.get('denied', []))} system calls denied (built with {sc.get('library', '?')})"
    else:
        seccomp = "off" + (f": {sc['why']}" if not sc.get("available") else f" in the run (Seccomp: {facts.get('seccomp', '?')})")
    keyctl = facts.get("keyctl")
    keyring = "fresh session keyring" + ("; keyring calls denied (EPERM)" if keyctl == "EPERM" else
                                         f"; keyring calls {keyctl}" if keyctl else "")
    return {"uid": who, "seccomp": seccomp, "proc_sys": facts.get("proc_sys", "unknown"), "keyring": keyring,
            "disk": str(limits.get("disk_enforced_by"))}
