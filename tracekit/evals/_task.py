"""`Task`: a dataset, the thing under test, and its scorers; found in Python files by the CLI.

    # evals/qa.py  ->  tracekit eval run evals/qa.py:qa --split val
    from tracekit.evals import Task, scorers, task

    @tracekit.trace(kind="agent")
    def agent(question: str) -> str: ...

    qa = Task("cases.jsonl", solver=agent, scorers=[scorers.includes()], epochs=3, time_limit=60)

    @task                       # or a function returning a Task (built when the CLI asks for it)
    def qa_strict() -> Task:
        return Task("cases.jsonl", solver=agent, scorers=[scorers.exact()])

The solver is called with the sample's input (`agent(sample.input)`), or with the whole `Sample`
when its first parameter is named `sample`. It may be sync or async; use `sandboxed(...)` to run a
command in the sandbox per case instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import EvalError
from ._sample import Dataset, as_dataset
from ._score import check_scorers, scorer_name

TASK_MARK = "__tracekit_task__"


@dataclass
class Task:
    """What an eval runs. Settings are defaults the CLI / `run_eval` can override per run.

    - `time_limit`: seconds per attempt of the solver (a case over it is scored as a timeout).
    - `retries`: extra attempts after a transient error (rate limit, overload, connection);
      wrong answers are never retried. `retry_on` adds exception types to treat as transient.
    - `epochs`: repetitions per case (reported as mean and pass@k).
    """

    dataset: Any
    solver: Callable[..., Any] | None = None
    scorers: Sequence[Any] | Any = None
    name: str = ""
    epochs: int = 1
    time_limit: float | None = None
    concurrency: int = 4
    retries: int = 2
    retry_on: tuple[type[BaseException], ...] = ()
    retry_backoff_s: float = 1.0
    pass_k: tuple[int, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    explicit_name: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.explicit_name = bool(self.name)
        self.dataset = as_dataset(self.dataset)
        if self.solver is None or not callable(self.solver):
            raise EvalError(f"task {self.name or '?'}: solver must be a callable (a function or agent), got {self.solver!r}; "
                            "for a command use solver=sandboxed([...])")
        self.scorers = check_scorers(self.scorers)
        if not self.name:
            self.name = getattr(self.solver, "name", None) or getattr(self.solver, "__name__", "") or "task"
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise EvalError(f"task {self.name}: epochs must be an integer >= 1, got {self.epochs!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise EvalError(f"task {self.name}: time_limit must be > 0 seconds, got {self.time_limit!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise EvalError(f"task {self.name}: concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise EvalError(f"task {self.name}: retries must be an integer >= 0, got {self.retries!r}")
        for exc_type in self.retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise EvalError(f"task {self.name}: retry_on must hold exception classes, got {exc_type!r}")

    @property
    def scorer_names(self) -> list[str]:
        return [scorer_name(s) for s in self.scorers]

    @property
    def passes_sample(self) -> bool:
        """True when the solver wants the whole Sample (first parameter named `sample`)."""
        if getattr(self.solver, "wants_sample", False):
            return True
        if self.solver is None:
            return False
        try:
            params = list(inspect.signature(self.solver).parameters)
        except (TypeError, ValueError):
            return False
        return bool(params) and params[0] == "sample"

    def select(self, splits: Sequence[str] | None = None, limit: int | None = None) -> Dataset:
        ds: Dataset = self.dataset
        if splits:
            ds = ds.split(*splits)
        if limit is not None:
            if limit < 1:
                raise EvalError(f"limit must be >= 1, got {limit}")
            ds = ds[:limit]
        return ds


def task(fn: Callable[[], Task]) -> Callable[[], Task]:
    """Mark a zero-argument function returning a Task, so `tracekit eval run FILE.py:name` finds it."""
    setattr(fn, TASK_MARK, True)
    return fn


def _import_file(path: Path) -> Any:
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    mod_name = f"_tracekit_eval_{resolved.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the task file can import its neighbours (the agent, helpers)
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise EvalError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except EvalError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise EvalError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def find_tasks(module: Any) -> dict[str, Any]:
    """Task objects and @task functions defined in a module, by attribute name."""
    out: dict[str, Any] = {}
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, Task) or (callable(value) and getattr(value, TASK_MARK, False)):
            out[attr] = value
    return out


def load_task(spec: str) -> tuple[Task, str]:
    """The task named by `FILE.py[:name]` and its canonical source string (`FILE.py:name`)."""
    path_str, _, attr = spec.partition(":") if ":" in spec and not spec.endswith(":") else (spec, "", "")
    path = Path(path_str)
    if path.suffix != ".py" or not path.is_file():
        raise EvalError(f"{path_str!r} is not a Python file; expected FILE.py or FILE.py:task")
    module = _import_file(path)
    tasks = find_tasks(module)
    if attr:
        if attr not in tasks:
            known = ", ".join(sorted(tasks)) or "none"
            raise EvalError(f"{path}: no task named {attr!r} (tasks in the file: {known}); a task is a Task object or an @task function")
        name = attr
    elif len(tasks) == 1:
        name = next(iter(tasks))
    elif not tasks:
        raise EvalError(f"{path}: defines no task; add e.g. `my_task = Task(dataset, solver=agent, scorers=[scorers.exact()])`")
    else:
        raise EvalError(f"{path}: defines several tasks ({', '.join(sorted(tasks))}); pick one with {path}:NAME")
    value = tasks[name]
    if not isinstance(value, Task):
        value = value()
        if not isinstance(value, Task):
            raise EvalError(f"{path}:{name} returned {type(value).__name__}, expected a Task")
    if not value.explicit_name:
        value.name = name
    return value, f"{path}:{name}"
