"""The optimization target: a folder, its editable files, the run command, the metric and the budget.

Read from `<folder>/tracekit.toml` (all keys optional) and overridden by flags:

    [target]
    editable = ["train.py"]          # the allowlist: the only files a proposal may change
    fixed = ["prepare.py"]           # checked by SHA-256 before every run
    run = "python train.py"          # the run command (a shell string or an argv list)
    setup = "python prepare.py"      # optional, run once before the baseline
    metric = "val_bpb"
    direction = "min"                # or "max"
    budget_s = 60                    # wall clock per run, enforced by the sandbox
    program = "program.md"           # the human's direction in plain English
    [target.env]                     # environment of every run
    TRACEKIT_TRAIN_SECONDS = "40"
    [noise]
    baseline_runs = 2                # repeats of the baseline to measure run-to-run noise
    min_delta = 0.0                  # a keep must beat the incumbent by more than this ...
    noise_mult = 2.0                 # ... and by more than noise_mult x the baseline's stdev / sqrt(runs)
    confirm = "auto"                 # rerun near-misses once (true: every would-be keep; false: never)
    [proposer]                       # defaults for the proposers (see docs/optimizer.md)
    model = "claude-sonnet-5-5"
    [holdout]                        # a sealed split, scored only by `tracekit optimize holdout`
    run = "python -m tracekit eval run evals.py --split test -f json"
    metric = "accuracy"
    files = ["holdout.jsonl"]        # never copied into a run, the base or the proposer's context

    target = load_target(Path("examples/tinylm"), {"budget_s": 30})
"""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from ._safefs import Dir, UnsafePath, check_rel, refuse_links

TOML_NAME = "tracekit.toml"
DEFAULT_EXCLUDE = (".tracekit", ".git", "__pycache__", ".pytest_cache", ".venv", "*.pyc")

_TARGET_KEYS = {
    "editable", "fixed", "run", "setup", "metric", "direction", "budget_s", "grace_s", "program", "env",
    "memory_mb", "max_procs", "disk_mb", "output_bytes", "network", "ro_paths", "exclude", "setup_budget_s",
    "max_file_bytes", "max_diff_lines", "name",
}
_NOISE_KEYS = {"baseline_runs", "min_delta", "noise_mult", "confirm"}
_HOLDOUT_KEYS = {"run", "metric", "files", "budget_s"}


@dataclass(frozen=True)
class Noise:
    baseline_runs: int = 2
    min_delta: float = 0.0
    noise_mult: float = 2.0
    confirm: str = "auto"  # auto: rerun near-misses | always: rerun every would-be keep | never


@dataclass(frozen=True)
class Holdout:
    """A sealed split: files no optimization run, base workspace or proposer ever gets, and the command
    that scores them (run by `tracekit optimize holdout` on the baseline and the reviewed best)."""

    run: str | tuple[str, ...]
    metric: str
    files: tuple[str, ...]
    budget_s: float | None = None  # default: the target's budget_s

    def settings(self) -> dict[str, Any]:
        return {"run": self.run if isinstance(self.run, str) else list(self.run), "metric": self.metric,
                "files": list(self.files), "budget_s": self.budget_s}


@dataclass(frozen=True)
class Target:
    """Everything fixed about one optimization problem (the proposer may change only `editable`)."""

    root: Path
    editable: tuple[str, ...]
    run: str | tuple[str, ...]
    metric: str
    direction: str = "min"
    budget_s: float = 60.0
    grace_s: float = 5.0
    fixed: tuple[str, ...] = ()
    setup: str | None = None
    setup_budget_s: float = 1800.0
    program: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    noise: Noise = field(default_factory=Noise)
    memory_mb: int = 4096
    max_procs: int = 256
    disk_mb: int = 2048
    output_bytes: int = 10 * 2**20
    network: bool = False
    ro_paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    max_file_bytes: int = 256 * 1024
    max_diff_lines: int = 2000
    name: str = ""
    proposer: Mapping[str, Any] = field(default_factory=dict)
    holdout: Holdout | None = None

    @property
    def sealed(self) -> tuple[str, ...]:
        """Paths (relative to the root) that are never copied anywhere a run or a proposer can see."""
        return self.holdout.files if self.holdout else ()

    @property
    def better(self) -> int:
        """+1 when larger is better, -1 when smaller is better."""
        return 1 if self.direction == "max" else -1

    def improvement(self, metric: float, reference: float) -> float:
        """How much better `metric` is than `reference` (positive = better), in metric units."""
        return (metric - reference) * self.better

    def program_text(self) -> str:
        if not self.program:
            return ""
        path = self.root / self.program
        try:
            return path.read_text(errors="replace")
        except OSError as exc:
            raise OptimizerError(f"program file {path} cannot be read ({exc}); fix [target].program or --program") from exc

    def run_argv(self) -> str | list[str]:
        return list(self.run) if isinstance(self.run, tuple) else self.run

    def identity(self) -> dict[str, Any]:
        """The settings a run's measurements depend on; resuming with other values is refused."""
        out = {
            "editable": list(self.editable), "fixed": list(self.fixed),
            "run": self.run if isinstance(self.run, str) else list(self.run),
            "metric": self.metric, "direction": self.direction, "budget_s": self.budget_s,
            "env": dict(sorted(self.env.items())), "setup": self.setup,
        }
        if self.holdout is not None:  # only then: runs started before holdouts existed resume unchanged
            out["holdout"] = self.holdout.settings()
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        d["env"] = dict(self.env)
        d["proposer"] = dict(self.proposer)
        return d

    def fixed_hashes(self, folder: Path | None = None) -> dict[str, str]:
        """SHA-256 of every fixed file (in `folder`, default the target root), read without following links."""
        return {rel: hashlib.sha256(data).hexdigest() for rel, data in self.read_files(self.fixed, "fixed", folder).items()}

    def sealed_hashes(self) -> dict[str, str]:
        """SHA-256 of every sealed (holdout) file in the target root, read without following links."""
        return {rel: hashlib.sha256(data).hexdigest() for rel, data in self.read_files(self.sealed, "sealed").items()}

    def read_files(self, rels: tuple[str, ...], what: str, folder: Path | None = None) -> dict[str, bytes]:
        base = folder or self.root
        out = {}
        with Dir.open(base) as d:
            for rel in rels:
                try:
                    out[rel] = d.read(rel)
                except FileNotFoundError:
                    raise OptimizerError(f"{what} file {rel!r} is missing in {base}; it must exist (checked before every "
                                         "run)") from None
                except (UnsafePath, NotADirectoryError) as exc:
                    raise OptimizerError(f"{what} file {rel!r} in {base}: {exc}") from None
        return out


def _confirm(value: Any) -> str:
    if value is True or value == "always":
        return "always"
    if value is False or value == "never":
        return "never"
    if value == "auto":
        return "auto"
    raise OptimizerError(f"[noise] confirm = {value!r}: use \"auto\" (rerun near-misses), true (rerun every would-be keep) "
                         "or false (never rerun)")


def _as_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise OptimizerError(f"{key} must be a string or a list of strings, got {value!r}")


def _rel(root: Path, value: str, key: str) -> str:
    p = Path(value)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(root)
        except ValueError:
            raise OptimizerError(f"{key} {value!r} is outside the target folder {root}; list paths relative to it") from None
    norm = os.path.normpath(str(p))
    if norm == ".." or norm.startswith("../"):
        raise OptimizerError(f"{key} {value!r} is outside the target folder {root}; list paths relative to it")
    check_rel(norm, key)
    refuse_links(root, norm, key)
    return norm


def read_toml(root: Path) -> dict[str, Any]:
    path = root / TOML_NAME
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptimizerError(f"{path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"target", "noise", "proposer", "holdout"}
    if unknown:
        raise OptimizerError(f"{path}: unknown sections {sorted(unknown)}; known: [target], [noise], [proposer], [holdout]")
    for section, known in (("target", _TARGET_KEYS), ("noise", _NOISE_KEYS), ("holdout", _HOLDOUT_KEYS)):
        keys = set(data.get(section, {}))
        if keys - known:
            raise OptimizerError(f"{path}: unknown keys in [{section}]: {sorted(keys - known)}; known: {sorted(known)}")
    return data


def load_target(root: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> Target:
    """The target in `root`: its tracekit.toml (if any), then `overrides` (flags; None values ignored).

    Override keys are the [target] keys plus the [noise] keys and `proposer` (a dict merged into
    [proposer]). Without a toml, `editable`, `run` and `metric` must come from flags; a folder with
    a `train.py` defaults to editable train.py and run "python train.py".
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise OptimizerError(f"target folder {folder} does not exist; pass the folder that holds your editable file")
    folder = folder.resolve()
    data = read_toml(folder)
    t: dict[str, Any] = dict(data.get("target", {}))
    noise: dict[str, Any] = dict(data.get("noise", {}))
    proposer: dict[str, Any] = dict(data.get("proposer", {}))
    for key, value in (overrides or {}).items():
        if value is None or value == () or value == []:
            continue
        if key in _NOISE_KEYS:
            noise[key] = value
        elif key == "proposer":
            proposer.update(value)
        elif key == "env":
            t["env"] = {**t.get("env", {}), **value}
        elif key in _TARGET_KEYS:
            t[key] = value
        else:
            raise OptimizerError(f"unknown target setting {key!r}; known: {sorted(_TARGET_KEYS | _NOISE_KEYS)}")
    if not t.get("editable") and (folder / "train.py").is_file():
        t["editable"] = ["train.py"]
    if not t.get("run") and list(_as_list(t.get("editable"), "editable")) == ["train.py"]:
        t["run"] = "python train.py"
    missing = [k for k in ("editable", "run", "metric") if not t.get(k)]
    if missing:
        raise OptimizerError(
            f"target {folder}: {', '.join(missing)} not set; write them in {TOML_NAME} [target] or pass "
            "--editable FILE --run 'CMD' --metric NAME"
        )
    editable = tuple(_rel(folder, e, "editable") for e in _as_list(t["editable"], "editable"))
    for e in editable:
        if not (folder / e).is_file():
            raise OptimizerError(f"editable file {e!r} does not exist in {folder}")
    fixed = tuple(_rel(folder, f, "fixed") for f in _as_list(t.get("fixed"), "fixed"))
    overlap = set(editable) & set(fixed)
    if overlap:
        raise OptimizerError(f"{sorted(overlap)} listed as both editable and fixed; a file is one or the other")
    run = _command(t["run"], "run")
    direction = str(t.get("direction", "min")).lower()
    if direction in ("minimize", "lower"):
        direction = "min"
    if direction in ("maximize", "higher"):
        direction = "max"
    if direction not in ("min", "max"):
        raise OptimizerError(f"direction {t.get('direction')!r}: use 'min' (lower is better) or 'max'")
    env = t.get("env", {})
    if not isinstance(env, dict):
        raise OptimizerError(f"[target.env] must be a table of NAME = \"value\", got {env!r}")
    program = t.get("program")
    if program is None and (folder / "program.md").is_file():
        program = "program.md"
    try:
        target = Target(
            root=folder,
            editable=editable,
            run=run,
            metric=str(t["metric"]),
            direction=direction,
            budget_s=float(t.get("budget_s", 60.0)),
            grace_s=float(t.get("grace_s", 5.0)),
            fixed=fixed,
            setup=t.get("setup") or None,
            setup_budget_s=float(t.get("setup_budget_s", 1800.0)),
            program=program,
            env={str(k): str(v) for k, v in env.items()},
            noise=Noise(
                baseline_runs=int(noise.get("baseline_runs", 2)),
                min_delta=float(noise.get("min_delta", 0.0)),
                noise_mult=float(noise.get("noise_mult", 2.0)),
                confirm=_confirm(noise.get("confirm", "auto")),
            ),
            memory_mb=int(t.get("memory_mb", 4096)),
            max_procs=int(t.get("max_procs", 256)),
            disk_mb=int(t.get("disk_mb", 2048)),
            output_bytes=int(t.get("output_bytes", 10 * 2**20)),
            network=bool(t.get("network", False)),
            ro_paths=_as_list(t.get("ro_paths"), "ro_paths"),
            exclude=tuple(DEFAULT_EXCLUDE) + _as_list(t.get("exclude"), "exclude"),
            max_file_bytes=int(t.get("max_file_bytes", 256 * 1024)),
            max_diff_lines=int(t.get("max_diff_lines", 2000)),
            name=str(t.get("name") or folder.name),
            proposer=proposer,
            holdout=_holdout(folder, data.get("holdout"), editable + fixed + (program or "", TOML_NAME)),
        )
    except (TypeError, ValueError) as exc:
        raise OptimizerError(f"target {folder}: a setting has the wrong type ({exc}); see docs/optimizer.md") from exc
    if target.budget_s <= 0:
        raise OptimizerError(f"budget_s must be positive, got {target.budget_s}")
    if target.noise.baseline_runs < 1:
        raise OptimizerError(f"[noise] baseline_runs must be at least 1, got {target.noise.baseline_runs}")
    if target.program and not (folder / target.program).is_file():
        raise OptimizerError(f"program file {target.program!r} does not exist in {folder}")
    for ro in target.ro_paths:  # a read-only path that holds a sealed file would hand it to every run
        where = Path(ro).expanduser()
        where = (where if where.is_absolute() else folder / where).resolve()
        leaked = [rel for rel in target.sealed if (folder / rel).resolve().is_relative_to(where)]
        if leaked:
            raise OptimizerError(f"ro_paths entry {ro!r} holds the sealed holdout files {leaked}: every run could read "
                                 "them. List a narrower read-only path, or move the sealed files out of it")
    return target


def _command(value: Any, key: str) -> str | tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return tuple(value)
    if isinstance(value, str) and value.strip():
        return value
    raise OptimizerError(f"{key} must be a shell string or a non-empty list of strings, got {value!r}")


def _refuse_other_names(folder: Path, files: tuple[str, ...], where: str) -> None:
    """A symbolic link to a sealed file (or its folder) or a hard link of one elsewhere in the target would be
    copied where the sealed file is not: refused."""
    real = [(folder / rel).resolve() for rel in files]
    inodes = {(st.st_dev, st.st_ino) for st in (p.stat() for p in real)}
    sealed = {folder / rel for rel in files}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not any(fnmatch(d, pat) for pat in DEFAULT_EXCLUDE)]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                to = path.resolve()
                if any(r == to or r.is_relative_to(to) for r in real):
                    raise OptimizerError(f"{where}: {path} is a symbolic link to a sealed file (or its folder); runs would "
                                         "get the sealed split through it. Remove the link")
            elif stat.S_ISREG(st.st_mode) and path not in sealed and (st.st_dev, st.st_ino) in inodes:
                raise OptimizerError(f"{where}: {path} is a hard link of a sealed file; runs would get the sealed split "
                                     "under that name. Remove it")


def _holdout(folder: Path, data: Any, visible: tuple[str, ...]) -> Holdout | None:
    """[holdout]: the command scoring the sealed split, its metric, and the sealed files (never in a run's copy)."""
    if data is None:
        return None
    where = f"{folder / TOML_NAME} [holdout]"
    if not isinstance(data, dict):
        raise OptimizerError(f"{where} must be a table: [holdout] with run, metric and files below it")
    missing = [k for k in ("run", "metric", "files") if not data.get(k)]
    if missing:
        raise OptimizerError(f"{where}: {', '.join(missing)} not set; a holdout needs run = \"the command that scores "
                             "the sealed split\", metric = \"its metric\" and files = [\"the sealed files\"]")
    files = tuple(_rel(folder, f, "[holdout] files") for f in _as_list(data["files"], "[holdout] files"))
    for rel in files:
        if not (folder / rel).is_file():
            raise OptimizerError(f"{where}: sealed file {rel!r} does not exist in {folder}")
    shared = sorted(set(files) & set(visible))
    if shared:
        raise OptimizerError(f"{where}: {shared} cannot be sealed: editable and fixed files, the program and "
                             f"{TOML_NAME} go into every run. Put the sealed split in files of its own")
    _refuse_other_names(folder, files, where)
    budget = data.get("budget_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise OptimizerError(f"{where}: budget_s must be a positive number of seconds, got {budget!r}")
    return Holdout(_command(data["run"], "[holdout] run"), str(data["metric"]), files,
                   float(budget) if budget is not None else None)

