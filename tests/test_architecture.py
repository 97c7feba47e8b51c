"""The shape of the package: imports run one way, no cycles, literal and deliberate public names.

docs/design/architecture.md draws the layers; pyproject's [tool.importlinter] states them; these
tests make CI fail on an upward import, on a new cycle, on an accidental change of what users can
import, and on lint (unused or unsorted imports).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PUBLIC = {
    "tracekit": [
        "CollectorError", "ConfigError", "EvalError", "OptimizerError", "QueryError", "SandboxError", "Settings",
        "SpanHandle", "Store", "StoreError", "TracekitError", "Trajectory", "TrajectoryError", "configure",
        "annotate", "current_trace_id", "experiment", "export_atif", "flush", "get_settings", "import_atif", "instrument_anthropic",
        "log_metric", "query", "set_model_prices", "shutdown", "span", "trace", "trajectory", "uninstrument_anthropic",
    ],
    "tracekit.store": [
        "Column", "Database", "ModelPrice", "Store", "Table", "all_tables", "default_home", "derived_views", "get_table",
        "model_prices", "set_model_prices", "sql_list", "sql_literal",
    ],
    "tracekit.llm": ["instrument_anthropic", "uninstrument_anthropic"],
    "tracekit.trajectories": ["Step", "Trajectory", "export_atif", "import_atif", "to_atif", "trajectory"],
    "tracekit.collector": ["CollectorConfig", "create_app"],
    "tracekit.ui": ["UIConfig", "create_app", "install"],
    "tracekit.sandbox": [
        "BACKENDS", "CapturedOutput", "CheckReport", "DEFAULT_ENV_ALLOWLIST", "Executor", "LocalExecutor", "RayExecutor",
        "RunHandle", "RunResult", "RunSpec", "STATUSES", "check", "run",
    ],
    "tracekit.evals": [
        "CommandFailed", "Comparison", "Dataset", "EvalReport", "SPLITS", "Sample", "Score", "Scorer", "Task",
        "TransientError", "accuracy", "compare", "is_transient", "load_task", "mean", "pass_at_k", "run_eval",
        "run_eval_async", "sandboxed", "scorers", "stderr", "task",
    ],
    "tracekit.backends": ["Candidate", "Evaluation", "Experiments"],
    "tracekit.optimizer": [
        "ALARMS", "AlarmInput", "PROPOSERS", "STATUSES", "Cost", "Ledger", "Noise", "Optimizer", "Proposal", "ProposalContext", "Proposer",
        "ProposerExhausted", "Section", "Summary", "Target", "load_target", "register_section",
    ],
}


def _tool(name: str) -> str:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is missing from the environment: run `scripts/setup dev` (it is in the dev extra)")
    return str(exe)


def test_imports_run_one_way_without_cycles() -> None:
    """import-linter's contracts (pyproject.toml): the layers, and no cycle inside any subpackage."""
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_lint_finds_no_unused_or_unsorted_imports() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "tracekit", "tests", "bench"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-6000:]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_the_deliberate_ones(module: str) -> None:
    """What users import: a change here is a change of the public API, made on purpose."""
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_every_package_declares_a_literal_sorted_all() -> None:
    """`__all__` is a literal list (tools and readers see it) in every package's `__init__`."""
    for init in sorted((ROOT / "tracekit").rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        assigns = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                   and any(getattr(t, "id", None) == "__all__" for t in ([n.target] if isinstance(n, ast.AnnAssign) else n.targets))]
        assert len(assigns) == 1, f"{init.relative_to(ROOT)}: declare __all__ once"
        value = assigns[0].value
        assert isinstance(value, ast.List) and all(isinstance(e, ast.Constant) for e in value.elts), \
            f"{init.relative_to(ROOT)}: __all__ must be a literal list of names"
        names = [e.value for e in value.elts]  # type: ignore[attr-defined]
        assert names == sorted(names), f"{init.relative_to(ROOT)}: keep __all__ sorted"
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)}: say what the package is for"


def test_the_root_holds_only_the_span_path_the_facade_and_the_subpackages() -> None:
    """`ls tracekit/` names the parts: the subpackages, plus the span path and the public facade."""
    entries = {p.name for p in (ROOT / "tracekit").iterdir() if p.name != "__pycache__"}
    assert entries == {
        "__init__.py", "__main__.py", "_config.py", "_decorators.py", "_errors.py", "_exporter.py", "_query.py",
        "py.typed", "testing.py", "_cli", "_util", "backends", "collector", "evals", "llm", "optimizer", "sandbox", "store",
        "trajectories", "ui",
    }, sorted(entries)
