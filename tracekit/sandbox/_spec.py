"""`RunSpec` (what to run, under which limits) and `RunResult` (what happened), both plain data.

Both round-trip through `to_dict()` / `from_dict()` as JSON, which is how the Ray executor ships
them between machines and how `run.json` is written next to a run's logs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .._errors import SandboxError

Status = Literal["ok", "crash", "timeout", "oom", "output_limit", "no_metric", "killed"]
STATUSES: tuple[str, ...] = ("ok", "crash", "timeout", "oom", "output_limit", "no_metric", "killed")
BACKENDS: tuple[str, ...] = ("auto", "bwrap", "unshare", "local")

DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PYTHONHASHSEED", "SOURCE_DATE_EPOCH",
)
DEFAULT_COPY_EXCLUDE: tuple[str, ...] = (".git", ".tracekit", "__pycache__", ".pytest_cache")
RESERVED_ENV: tuple[str, ...] = (
    "TRACEKIT_RESULT", "TRACEKIT_HOME", "TRACEKIT_RUN_ID", "TRACEKIT_EXPERIMENT_ID", "TRACEKIT_PROJECT", "TRACEPARENT",
    "TRACEKIT_SANDBOX", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
METRIC_NAME = re.compile(r"^[A-Za-z_][\w.\-/]{0,199}$")


@dataclass(frozen=True)
class RunSpec:
    """One sandboxed run: a command executed in a fresh copy of `workspace` under limits.

        spec = RunSpec(["python", "train.py"], workspace=Path("target"), budget_s=300, metric="val_bpb")
        result = tracekit.sandbox.run(spec)

    `command` is an argv list, or a string run with `/bin/sh -c`. `python` on the PATH inside is
    the interpreter running tracekit. Limits set to None are not enforced. `output_bytes` caps
    stdout and stderr each; `disk_mb` caps /tmp (a tmpfs) and what the run adds to its
    workspace and output folder. `env` holds explicit variables; `env_allowlist` names (or
    `fnmatch` patterns) copied from this process's environment. Spans the run emits land in
    `trace_home` (default: tracekit's configured home) tagged with `experiment_id` (default: the
    run id). `otlp` starts a loopback OTLP/HTTP receiver for OpenTelemetry SDKs inside the run.
    `use_cgroups=False` enforces memory and process caps with rlimits only (see docs/sandbox.md).
    """

    command: Sequence[str] | str
    workspace: Path | None = None
    budget_s: float = 60.0
    grace_s: float = 5.0
    memory_mb: int | None = 2048
    max_procs: int | None = 256
    disk_mb: int | None = 1024
    output_bytes: int = 10 * 2**20
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    env_allowlist: Sequence[str] = DEFAULT_ENV_ALLOWLIST
    ro_paths: Sequence[Path | str] = ()
    rw_paths: Sequence[Path | str] = ()
    metric: str | None = None
    experiment_id: str | None = None
    trace_home: Path | None = None
    backend: str = "auto"
    run_dir: Path | None = None
    traceparent: str | None = None
    otlp: bool = True
    trace_bytes: int = 64 * 2**20
    result_bytes: int = 2**20
    copy_exclude: Sequence[str] = DEFAULT_COPY_EXCLUDE
    startup_timeout_s: float = 30.0
    name: str | None = None
    use_cgroups: bool = True

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return [str(a) for a in self.command]

    def validate(self) -> None:
        """Raise SandboxError naming the first bad field, what was expected and how to fix it."""
        cmd = self.command
        if isinstance(cmd, str):
            if not cmd.strip():
                raise SandboxError("RunSpec.command is an empty string; give an argv list or a shell command")
        elif not isinstance(cmd, Sequence) or not cmd or not all(isinstance(a, (str, os.PathLike)) for a in cmd):
            raise SandboxError(f"RunSpec.command={cmd!r}: expected a non-empty list of strings or a shell string")
        if any("\0" in str(a) for a in self.argv()):
            raise SandboxError("RunSpec.command contains a NUL byte")
        _positive("budget_s", self.budget_s)
        if not _finite(self.grace_s) or self.grace_s < 0:
            raise SandboxError(f"RunSpec.grace_s={self.grace_s!r}: expected a finite number >= 0 (seconds)")
        _positive("startup_timeout_s", self.startup_timeout_s)
        _min_int("memory_mb", self.memory_mb, 16, optional=True)
        _min_int("max_procs", self.max_procs, 4, optional=True)
        _min_int("disk_mb", self.disk_mb, 1, optional=True)
        _min_int("output_bytes", self.output_bytes, 1024)
        _min_int("trace_bytes", self.trace_bytes, 0)
        _min_int("result_bytes", self.result_bytes, 64)
        if self.workspace is not None and not Path(self.workspace).is_dir():
            raise SandboxError(f"RunSpec.workspace={str(self.workspace)!r} is not a directory; pass an existing folder or None")
        if self.backend not in BACKENDS:
            raise SandboxError(f"RunSpec.backend={self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.metric is not None and not METRIC_NAME.match(self.metric):
            raise SandboxError(f"RunSpec.metric={self.metric!r}: expected a name like 'val_bpb' (letters, digits, _ . - /)")
        for key, value in self.env.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise SandboxError(f"RunSpec.env has a bad variable name {key!r}")
            if not isinstance(value, str) or "\0" in value:
                raise SandboxError(f"RunSpec.env[{key!r}]={value!r}: values must be strings without NUL bytes")
            if key in RESERVED_ENV:
                raise SandboxError(f"RunSpec.env sets {key}, which the sandbox sets itself; remove it")
        for label, paths in (("ro_paths", self.ro_paths), ("rw_paths", self.rw_paths)):
            for p in paths:
                if not Path(p).is_absolute() or not Path(p).exists():
                    raise SandboxError(f"RunSpec.{label} entry {str(p)!r} must be an absolute path that exists")
        if self.traceparent is not None and not re.match(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", self.traceparent):
            raise SandboxError(f"RunSpec.traceparent={self.traceparent!r} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            elif isinstance(v, (list, tuple)):
                v = [str(x) if isinstance(x, Path) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SandboxError(f"unknown RunSpec fields {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(data)
        for key in ("workspace", "trace_home", "run_dir"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        for key in ("env_allowlist", "copy_exclude", "ro_paths", "rw_paths"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(name: str, v: Any) -> None:
    if not _finite(v) or v <= 0:
        raise SandboxError(f"RunSpec.{name}={v!r}: expected a finite number > 0 (seconds)")


def _min_int(name: str, v: Any, low: int, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        hint = " or None for no limit" if optional else ""
        raise SandboxError(f"RunSpec.{name}={v!r}: expected an integer >= {low}{hint}")


@dataclass(frozen=True)
class CapturedOutput:
    """One output stream: its first and last bytes (decoded), total size and the log file.

    `head` is the first 64 KiB, `tail` the last 64 KiB after the head (never overlapping it);
    `truncated` says bytes between them were elided. The log file at `path` holds the first
    `output_bytes` of the stream (plus, past that, an elision note and the tail).
    `limit_exceeded` says the stream passed `output_bytes` (the run was stopped for it).
    """

    head: str
    tail: str
    total_bytes: int
    truncated: bool
    path: Path
    limit_exceeded: bool = False

    def text(self) -> str:
        if not self.truncated:
            return self.head + self.tail
        elided = self.total_bytes - len(self.head.encode("utf-8", "replace")) - len(self.tail.encode("utf-8", "replace"))
        return f"{self.head}\n[... {max(elided, 0)} bytes elided ...]\n{self.tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "tail": self.tail, "total_bytes": self.total_bytes, "truncated": self.truncated,
                "path": str(self.path), "limit_exceeded": self.limit_exceeded}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CapturedOutput":
        return cls(d["head"], d["tail"], int(d["total_bytes"]), bool(d["truncated"]), Path(d["path"]),
                   bool(d.get("limit_exceeded", False)))


@dataclass
class RunResult:
    """What one run did. `status` decides; `metrics` are what the run reported (even if it then failed).

    Status precedence: killed (cancelled) > timeout / oom / output_limit > crash (non-zero exit or
    a signal) > no_metric (missing or non-finite) > ok. A missing metric is never 0.
    """

    run_id: str
    status: str
    exit_code: int | None
    signal: int | None
    wall_s: float
    cpu_s: float | None
    peak_memory_mb: float | None
    metrics: dict[str, float]
    metric_source: str | None
    error: str | None
    stdout: CapturedOutput
    stderr: CapturedOutput
    changed_files: list[str]
    workspace: Path
    run_dir: Path
    backend: str
    limits: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    experiment_id: str | None
    metric: str | None = None
    started_at: str | None = None
    spans_ingested: int = 0
    notes: list[str] = field(default_factory=list)  # what the sandbox did besides the verdict (leftovers killed, ...)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def value(self) -> float | None:
        """The configured metric's value when the run succeeded, else None (never a made-up 0)."""
        if self.status != "ok" or self.metric is None:
            return None
        return self.metrics.get(self.metric)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, CapturedOutput):
                v = v.to_dict()
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, dict):
                v = dict(v)
            elif isinstance(v, list):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunResult":
        kw = dict(d)
        kw["stdout"] = CapturedOutput.from_dict(d["stdout"])
        kw["stderr"] = CapturedOutput.from_dict(d["stderr"])
        kw["workspace"] = Path(d["workspace"])
        kw["run_dir"] = Path(d["run_dir"])
        kw["metrics"] = {str(k): float(v) for k, v in d["metrics"].items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})
