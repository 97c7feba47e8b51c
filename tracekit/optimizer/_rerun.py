"""Reruns after the loop: the baseline and the reviewed best candidate, measured again in the sandbox.

`optimize confirm` (the metric again, on fresh seeds) and `optimize holdout` (the sealed split)
share this: the run is taken for exclusive use (its lock: refused while a loop holds it, and no
loop starts meanwhile), the target is rebuilt from what the run pre-registered (so the flags it was
started with need not be repeated), the candidate is the incumbent after review (as the loop's
`Recorder.incumbent`), and every rerun is a sandboxed run of its own with its own `TRACEKIT_SEED`
(fresh, random, recorded) and `TRACEKIT_RUN_INDEX` (its position in the series), under one trace
whose spans carry the series' own experiment id (`<run>-confirm-<time>`), never a ledger id: the
proposer's context, which reads the ledger's experiments, never shows them.

    with Rerun(target, home, "main", "confirm") as rr:
        row, commit = rr.pick(None)
        results = rr.measure([("baseline", rr.baseline_commit), ("candidate", commit)], runs=5)
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode

from .._errors import OptimizerError
from ..store._tables import ExperimentRow
from ._ledger import Ledger
from ._review import effective_keeps, load_chain
from ._safefs import Dir, remove_tree, write_file
from ._session import RUN_ID, Session, loop_pid
from ._target import Target, load_target

MAX_RUNS = 100


@dataclass
class Measured:
    """One rerun: which code (arm), its seed and index, and what the sandbox said."""

    arm: str
    index: int
    seed: int
    status: str
    value: float | None
    wall_s: float
    error: str | None
    run_dir: str


def run_meta(home: Path, run_id: str) -> dict[str, Any]:
    if not RUN_ID.match(run_id):
        raise OptimizerError(f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (max 64), e.g. --tag main")
    path = Path(home) / "optimizer" / run_id / "run.json"
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise OptimizerError(f"no run {run_id!r} under {home}; start one with `tracekit optimize TARGET_DIR`") from None
    except ValueError as exc:
        raise OptimizerError(f"{path} is not a run's JSON ({exc}); restore it from a backup or start a new --tag") from None
    return meta


def target_for_run(target_dir: str | Path, home: Path, run_id: str) -> Target:
    """The target as the run pre-registered it: its tracekit.toml with the run's recorded settings as overrides."""
    meta = run_meta(home, run_id)
    ident = dict(meta.get("identity") or {})
    ident.pop("holdout", None)  # from the toml only: the run's identity check compares it
    overrides: dict[str, Any] = {k: v for k, v in ident.items() if v is not None}
    reg = meta.get("registration") or {}
    overrides.update({k: v for k, v in (reg.get("threshold_rule") or {}).items() if k != "rule"})
    overrides.update({k: v for k, v in (reg.get("budget") or {}).items() if k != "budget_s"})
    return load_target(target_dir, overrides)


class Rerun:
    """A run opened for reruns: locked, checked against its registration, with a trace for the series."""

    def __init__(self, target: Target, home: Path, run_id: str, kind: str, backend: str = "auto") -> None:
        self.target, self.home, self.run_id, self.kind, self.backend = target, Path(home).resolve(), run_id, kind, backend
        self.stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        self.series_id = f"{run_id}-{kind}-{self.stamp.replace('.', '')}"
        self.session = Session(target, self.home, run_id)
        self.rows: list[ExperimentRow] = []
        self.root: otel_trace.Span | None = None
        self._prev: Any = None

    def __enter__(self) -> "Rerun":
        import tracekit

        run_meta(self.home, self.run_id)  # refuse before Session.open could create a new run
        pid = loop_pid(self.session.dir)
        if pid is not None:
            raise OptimizerError(f"a loop (pid {pid if pid > 0 else '?'}; or a confirm or holdout) is working on run "
                                 f"{self.run_id!r}; `optimize {self.kind}` needs the run to itself. Wait for it to "
                                 f"finish, or stop a loop (`tracekit optimize stop --tag {self.run_id}`), then run it again")
        self.rows = Ledger(self.home, self.run_id).rows
        if not any(r["status"] == "baseline" and r.get("metric") is not None for r in self.rows):
            raise OptimizerError(f"run {self.run_id!r} has no measured baseline yet: nothing to compare; let the loop "
                                 "measure it first (`tracekit optimize TARGET_DIR`)")
        try:
            self.session.open()  # takes the lock: a loop started now is refused until we are done
            self._prev = tracekit.get_settings()
            tracekit.configure(home=self.home, project=self.target.name)
            self.root = self._span(f"optimizer.{self.kind}", "chain", None)
        except BaseException:
            self.session.close()  # refused (settings changed since the run started, ...): the lock is let go
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import tracekit

        try:
            if self.root is not None:
                if exc is not None:
                    self.root.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                self.root.end()
            tracekit.flush()
            if self._prev is not None and self._prev.home != self.home:
                tracekit.configure(home=self._prev.home, project=self._prev.project)
        finally:
            self.session.close()

    @property
    def baseline_commit(self) -> str:
        return str(self.session.meta["baseline_commit"])

    @property
    def trace_id(self) -> str | None:
        return otel_trace.format_trace_id(self.root.get_span_context().trace_id) if self.root is not None else None

    @property
    def folder(self) -> Path:
        return self.session.dir / f"{self.kind}-{self.stamp}"

    def pick(self, experiment: str | None) -> tuple[ExperimentRow, str]:
        """The candidate: `experiment` (a keep, or any measured candidate), else the incumbent after review."""
        keeps = effective_keeps(self.rows, load_chain(self.home, self.run_id))
        if experiment is None:
            if not keeps:
                raise OptimizerError(f"run {self.run_id!r} has no kept experiment: the baseline is still the best, so "
                                     f"there is nothing to {self.kind}")
            row, commit = keeps[-1]
        else:
            on_branch = {r["experiment_id"]: (r, c) for r, c in keeps}
            found = on_branch.get(experiment)
            if found is None:
                r2 = next((r for r in self.rows if r["experiment_id"] == experiment), None)
                if r2 is None or r2["status"] not in ("keep", "discard") or not r2.get("candidate_commit"):
                    kept = ", ".join(on_branch) or "none"
                    raise OptimizerError(f"experiment {experiment!r} is not a measured candidate of run {self.run_id!r}; "
                                         f"pass a kept or discarded one (kept: {kept})")
                found = (r2, str(r2["candidate_commit"]))
            row, commit = found
        if not commit:
            raise OptimizerError(f"keep {row['experiment_id']} has no candidate_commit; the ledger was changed by hand")
        return row, commit

    def measure(self, arms: list[tuple[str, str]], runs: int, *, command: str | list[str] | None = None,
                metric: str | None = None, budget_s: float | None = None, extra_files: dict[str, bytes] | None = None,
                on_event: Any = None) -> list[Measured]:
        """`runs` reruns of each arm (name, commit), interleaved (A B, B A, ...) so drift hits both alike."""
        if not 1 <= runs <= MAX_RUNS:
            raise OptimizerError(f"--runs {runs}: use 1 to {MAX_RUNS}")
        seeds: list[int] = []
        while len(seeds) < runs * len(arms):
            seed = secrets.randbelow(2**31 - 2) + 1  # fresh: random, never 0 (a target's usual default)
            if seed not in seeds:
                seeds.append(seed)
        order = iter(seeds)
        out: list[Measured] = []
        files = {arm: self.session.files_at(commit) for arm, commit in arms}
        for i in range(runs):
            for arm, _ in (arms if i % 2 == 0 else arms[::-1]):
                m = self._one(arm, files[arm], len(out), next(order), command, metric, budget_s, extra_files or {})
                out.append(m)
                if on_event:
                    on_event("rerun", asdict(m))
        return out

    def _one(self, arm: str, files: dict[str, str], index: int, seed: int, command: str | list[str] | None,
             metric: str | None, budget_s: float | None, extra: dict[str, bytes]) -> Measured:
        from tracekit.sandbox import RunSpec, run

        t = self.target
        ws_id = f"{self.kind}-{index}"
        ws = self.session.workspace(ws_id, files)
        if extra:
            with Dir.open(ws, anchor=self.session.dir) as d:
                for rel, data in extra.items():
                    d.write(rel, data)
        run_dir = self.folder / f"run-{index}-{arm}"
        span = self._span("optimizer.run", "run", self.root, **{"tracekit.optimizer.arm": arm, "tracekit.optimizer.seed": seed,
                                                                 "tracekit.optimizer.run_index": index})
        ctx = span.get_span_context()
        ro = [str(q if q.is_absolute() else (t.root / q).resolve()) for q in (Path(p).expanduser() for p in t.ro_paths)]
        spec = RunSpec(
            command=command if command is not None else t.run_argv(), workspace=ws, budget_s=budget_s or t.budget_s,
            grace_s=t.grace_s, memory_mb=t.memory_mb, max_procs=t.max_procs, disk_mb=t.disk_mb,
            output_bytes=t.output_bytes, network=t.network, ro_paths=ro, metric=metric or t.metric,
            env={**t.env, "TRACEKIT_SEED": str(seed), "TRACEKIT_RUN_INDEX": str(index)},
            experiment_id=self.series_id, trace_home=self.home, backend=self.backend, run_dir=run_dir,
            traceparent=f"00-{otel_trace.format_trace_id(ctx.trace_id)}-{otel_trace.format_span_id(ctx.span_id)}-01",
        )
        try:
            res = run(spec)
            status, value, wall, error = res.status, res.value, res.wall_s, res.error
        except Exception as exc:  # the sandbox could not start: recorded as a failed rerun, the series goes on
            status, value, wall, error = "crash", None, 0.0, f"sandbox error: {type(exc).__name__}: {exc}"
        finally:
            self.session.drop_workspace(ws_id)
            for sub in ("workspace", "io", "tmp"):
                try:
                    remove_tree(run_dir / sub, anchor=self.session.dir)
                except OSError:
                    pass  # logs stay; a leftover copy is removed with the run folder
        span.set_attributes({"tracekit.sandbox.status": status, "tracekit.sandbox.wall_s": wall})
        if status != "ok":
            span.set_status(Status(StatusCode.ERROR, str(error or status)[:500]))
        span.end()
        return Measured(arm, index, seed, status, value, wall, error, str(run_dir))

    def _span(self, name: str, kind: str, parent: otel_trace.Span | None, **attrs: Any) -> otel_trace.Span:
        from .._config import get_tracer
        from .._decorators import _kind_attrs
        from ..store._rows import EXPERIMENT_ATTR

        a = {**_kind_attrs(kind), EXPERIMENT_ATTR: self.series_id, "tracekit.run_id": self.run_id, **attrs}
        ctx = otel_trace.set_span_in_context(parent if parent is not None else otel_trace.INVALID_SPAN)
        return get_tracer().start_span(name, context=ctx, attributes=a)

    def save(self, payload: dict[str, Any]) -> Path:
        """`<run>/<kind>-<UTC time>.json`, durable, never through a link."""
        path = self.session.dir / f"{self.kind}-{self.stamp}.json"
        write_file(path, json.dumps(payload, indent=1, default=str), durable=True, anchor=self.session.dir)
        return path

    def annotate(self, experiment_id: str, label: str, score: float | None, note: str) -> None:
        import math

        from ..store._annotations import write_annotation

        write_annotation(self.home, "experiment", experiment_id, label=label,
                         score=score if score is not None and math.isfinite(score) else None, note=note,
                         source=self.kind, trace_id=self.trace_id, project=self.target.name)


def values(measured: list[Measured], arm: str) -> list[float]:
    return [m.value for m in measured if m.arm == arm and m.status == "ok" and m.value is not None]


def failures(measured: list[Measured]) -> list[str]:
    return [f"{m.arm} run {m.index} (seed {m.seed}): {m.status} {(m.error or '')[:300]}".strip()
            for m in measured if m.status != "ok" or m.value is None]
