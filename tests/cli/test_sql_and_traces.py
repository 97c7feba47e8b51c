"""`tracekit sql`, `tracekit traces list|show` and `tracekit demo` over a real store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit
from tracekit._cli.main import main

from tests._support.traced import agent


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sql_formats(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([1, 2])
    tracekit.flush()
    code, out, _ = _run_cli(["sql", "SELECT name, kind FROM spans ORDER BY start_time", "--format", "json", "--home", str(home)], capsys)
    assert code == 0 and json.loads(out) == [{"name": "agent", "kind": "agent"}, {"name": "tool", "kind": "tool"}, {"name": "tool", "kind": "tool"}]
    code, out, _ = _run_cli(["sql", "SELECT count(*) AS n FROM spans", "-f", "csv", "--home", str(home)], capsys)
    assert out.splitlines() == ["n", "3"]
    code, out, _ = _run_cli(["sql", "SELECT kind, count(*) AS n FROM spans GROUP BY kind ORDER BY kind", "--home", str(home)], capsys)
    assert "agent" in out and "tool" in out and "2 rows" in out


def test_cli_bad_query_is_a_message_not_a_traceback(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([1])
    tracekit.flush()
    code, out, err = _run_cli(["sql", "SELEC nope", "--home", str(home)], capsys)
    assert code == 2 and "Traceback" not in err and "syntax error" in err.lower() and "spans(" in err


def test_cli_traces_list_and_show(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent([3, -4])
    tracekit.flush()
    code, out, _ = _run_cli(["traces", "list", "-f", "json", "--home", str(home)], capsys)
    (trace,) = json.loads(out)
    assert trace["name"] == "agent" and trace["spans"] == 3 and trace["errors"] == 1
    code, out, _ = _run_cli(["traces", "show", trace["trace_id"][:10], "--home", str(home)], capsys)
    assert code == 0
    assert "agent" in out and "error" in out and "ValueError: negative" in out and '{"x":3}' in out
    code, out, err = _run_cli(["traces", "show", "ffffffff", "--home", str(home)], capsys)
    assert code == 2 and "no trace with id" in err


def test_cli_demo_answers_in_sql(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    out = subprocess.run([sys.executable, "-m", "tracekit", "demo", "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "The answer is 42.0." in out.stdout and "KeyError" in out.stdout
    assert tracekit.query("SELECT count(*) FROM traces", home=home).fetchall() == [(3,)]
