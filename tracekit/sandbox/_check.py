"""`check()`: which backends and which limits work on this machine (each one actually tried).

    from tracekit.sandbox import check
    print(check().summary())
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _backends, _cgroup


@dataclass
class CheckReport:
    backends: dict[str, str | None] = field(default_factory=dict)  # name -> None (works) or why not
    auto: str = "local"
    cgroups: dict[str, str] = field(default_factory=dict)  # controller -> how it is enforced (or why not)
    rlimits: dict[str, str] = field(default_factory=dict)  # fallbacks when a cgroup controller is missing
    disk: str = "tmpfs size for /tmp (bwrap, unshare) + RLIMIT_FSIZE per file + folder watch"
    landlock_abi: int = 0
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
        lines.append(f"  {'disk':8} {self.disk}")
        lines.append(f"landlock ABI: {self.landlock_abi or 'none'}   euid: {self.euid}")
        if self.probe_run:
            p = self.probe_run
            lines.append(f"probe run ({p['backend']}): {p['status']} in {p['wall_s']:.3f} s"
                         + (f" - {p['error']}" if p.get("error") else ""))
        return "\n".join(lines)


def check(probe_run: bool = True) -> CheckReport:
    """Try each backend, create and remove a cgroup per controller, and (optionally) run a probe."""
    report = CheckReport(euid=os.geteuid(), landlock_abi=_backends.landlock_abi())
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
    if probe_run:
        from ._runner import run
        from ._spec import RunSpec

        with tempfile.TemporaryDirectory(prefix="tracekit-check-") as tmp:
            res = run(RunSpec([sys.executable, "-c", "print('METRIC probe=1')"], budget_s=30, memory_mb=256,
                              max_procs=32, disk_mb=16, otlp=False, run_dir=Path(tmp) / "run",
                              trace_home=Path(tmp) / "home", name="sandbox.check"))
            report.probe_run = {"backend": res.backend, "status": res.status, "wall_s": res.wall_s,
                                "error": res.error, "limits": res.limits}
    return report
