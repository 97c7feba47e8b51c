"""Types are checked: mypy strict over the package, typed rows that match their tables, py.typed.

The type checker runs as a test (about 20 s), so CI fails on a type error like on any other bug.
Rows of `experiments`, `eval_results` and `eval_runs` travel as TypedDicts declared beside their
tables; a test compares each TypedDict with its table, so neither can change alone.
"""

# No `from __future__ import annotations`: the TypedDict below must see `Required` evaluated, like the store's.
import datetime as dt
import re
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Required, TypedDict

import pytest

import tracekit
from tracekit._errors import ConfigError
from tracekit.store import _prices as prices
from tracekit.store._schema import BOOL, FLOAT64, INT64, JSON, STRING, TIMESTAMP, Column, Table, Type, list_of
from tracekit.store._tables import (
    ANNOTATIONS,
    EVAL_RESULTS,
    EVAL_RUNS,
    EXPERIMENTS,
    AnnotationRow,
    EvalResultRow,
    EvalRunRow,
    ExperimentRow,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tracekit"
ROW_TYPES = [(ExperimentRow, EXPERIMENTS), (EvalResultRow, EVAL_RESULTS), (EvalRunRow, EVAL_RUNS), (AnnotationRow, ANNOTATIONS)]
_SCALARS: dict[str, type] = {"string": str, "json": str, "int64": int, "float64": float, "bool": bool, "timestamp": dt.datetime}


def _python_type(t: Type) -> Any:
    if t.kind == "list":
        assert t.item is not None
        return list[_python_type(t.item)]
    if t.kind in _SCALARS:
        return _SCALARS[t.kind]
    raise AssertionError(f"no Python type for column type {t.kind!r}: add it to _SCALARS or give the row a struct TypedDict")


def row_type_mismatches(row_type: type, table: Table) -> list[str]:
    """Where `row_type` and `table` disagree: column names and order, NOT NULL vs Required, Python types."""
    hints = typing.get_type_hints(row_type)
    required: frozenset[str] = getattr(row_type, "__required_keys__")
    problems = []
    if list(hints) != table.column_names():
        problems.append(f"keys {list(hints)} != columns {table.column_names()} (same names, same order)")
    for col in table.columns:
        if col.name not in hints:
            continue
        want = _python_type(col.type)
        if col.required and (col.name not in required or hints[col.name] != want):
            problems.append(f"{col.name}: NOT NULL {col.type.kind}, so Required[{want}]; got {hints[col.name]}"
                            f"{'' if col.name in required else ' (not Required)'}")
        if not col.required and (col.name in required or hints[col.name] != want | None):
            problems.append(f"{col.name}: nullable {col.type.kind}, so a non-Required {want} | None; got {hints[col.name]}"
                            f"{' (Required)' if col.name in required else ''}")
    return problems


@pytest.mark.parametrize(("row_type", "table"), ROW_TYPES, ids=[t.name for _, t in ROW_TYPES])
def test_row_typeddict_matches_its_table_declaration(row_type: type, table: Table) -> None:
    assert row_type_mismatches(row_type, table) == []


def test_row_type_check_reports_every_kind_of_drift() -> None:
    class Row(TypedDict, total=False):
        run_id: Required[str]
        seq: Required[int]
        status: str | None
        metric: float | None
        when: dt.datetime | None
        files: list[str] | None
        ok: bool | None
        doc: str | None

    table = Table("t", "", (Column("run_id", STRING, "", required=True), Column("seq", INT64, "", required=True),
                            Column("status", STRING, ""), Column("metric", FLOAT64, ""), Column("when", TIMESTAMP, ""),
                            Column("files", list_of(STRING), ""), Column("ok", BOOL, ""), Column("doc", JSON, "")))
    assert row_type_mismatches(Row, table) == []

    def drifted(i: int, col: Column) -> Table:
        cols = list(table.columns)
        cols[i] = col
        return Table("t", "", tuple(cols))

    cases = {
        "a renamed column": drifted(2, Column("state", STRING, "")),
        "a column made NOT NULL": drifted(2, Column("status", STRING, "", required=True)),
        "a NOT NULL column made nullable": drifted(1, Column("seq", INT64, "")),
        "another type": drifted(3, Column("metric", INT64, "")),
        "another list item type": drifted(5, Column("files", list_of(INT64), "")),
        "a new column": Table("t", "", (*table.columns, Column("extra", STRING, ""))),
        "a column dropped": Table("t", "", table.columns[:-1]),
        "columns reordered": Table("t", "", (table.columns[1], table.columns[0], *table.columns[2:])),
    }
    for what, other in cases.items():
        assert row_type_mismatches(Row, other), f"{what} went unnoticed"


def test_package_passes_mypy_strict(tmp_path: Path) -> None:
    """`python -m mypy` with pyproject's configuration (strict, the whole package); its report is the failure message."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if "No module named mypy" in proc.stderr:
        pytest.fail("mypy is not installed in this environment: run scripts/setup dev (the dev extra pins it)")
    assert proc.returncode == 0, f"mypy --strict found errors (fix them; see pyproject [tool.mypy]):\n{proc.stdout}{proc.stderr}"


def test_mypy_configuration_is_strict_without_blanket_exceptions() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mypy = conf["tool"]["mypy"]
    assert mypy["strict"] is True and mypy["packages"] == ["tracekit"] and mypy["python_version"] == "3.11"
    assert "ignore-without-code" in mypy["enable_error_code"]
    for override in mypy.get("overrides", []):
        assert set(override) == {"module", "ignore_missing_imports"}, f"an override may only excuse a module without stubs: {override}"
        assert not any(m.startswith("tracekit") for m in override["module"]), override
    assert any(d.startswith("mypy>=") for d in conf["project"]["optional-dependencies"]["dev"])


def test_every_type_ignore_names_its_error_code_and_a_reason() -> None:
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "type: ignore" not in line:
                continue
            coded = re.search(r"#\s*type:\s*ignore\[[a-z-]+(,\s*[a-z-]+)*\]", line)
            reason = re.search(r"type:\s*ignore\[[^\]]*\]\s*#\s*\S", line) or (i and lines[i - 1].strip().startswith("#"))
            if not (coded and reason):
                bare.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert bare == [], "a `# type: ignore[code]` needs a reason (a comment after it or on the line above):\n" + "\n".join(bare)


def test_package_ships_py_typed() -> None:
    assert (Path(tracekit.__file__).parent / "py.typed").is_file()
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert conf["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["tracekit"]  # the whole folder: py.typed too


def test_sandbox_scripts_load_without_typing() -> None:
    """The launcher, init and view run by path at the start of every run: their types cost no import of `typing`."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _launch, _shim, _view; "
            "print(sorted(m for m in ('typing', 'tracekit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-I", "-B", "-c", code, str(PACKAGE / "sandbox")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_price_without_an_input_or_output_rate_is_refused_and_keeps_the_table() -> None:
    """Found by the type checker: `{'input': None}` became a price whose every cost raised TypeError."""
    saved = prices.model_prices()
    try:
        for bad in ({"input": None, "output": 2.0}, {"input": 1.0, "output": None}, {"output": 2.0}):
            with pytest.raises(ConfigError, match="USD per million tokens"):
                tracekit.set_model_prices({"typed-model": bad})
        assert prices.model_prices() == saved
        assert prices.model_cost("typed-model", 1000, 1000) is None
        tracekit.set_model_prices({"typed-model": {"input": 1.0, "output": 2.0}})
        assert prices.model_cost("typed-model", 1_000_000, 1_000_000) == pytest.approx(3.0)
    finally:
        prices.set_model_prices(saved, replace=True)


def test_union_types_compare_as_the_check_expects() -> None:
    """The check compares `str | None` built at run time with the hint mypy reads; both are types.UnionType."""
    assert isinstance(str | None, types.UnionType) and (str | None) == typing.get_type_hints(EvalRunRow)["source"]
