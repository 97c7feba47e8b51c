"""Tables in an 80-column terminal: whole headers, values cut with an ellipsis, records when no table fits;
`tracekit sql` with several statements shows each one's result."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from rich.cells import cell_len

import tracekit
from tracekit._cli._table import fit
from tracekit._cli.main import main

LONG = "summarise_the_quarterly_report_for_the_board_" * 3


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def spans(home: Path) -> Path:
    for i in range(3):
        with tracekit.span(f"{LONG}{i}", kind="agent") as s:
            s.set_input({"q": "x" * 300})
            with tracekit.span("tool", kind="tool") as t:
                t.set_output("y" * 300)
    tracekit.flush()
    return home


def _assert_fits(out: str, headers: list[str]) -> None:
    lines = out.splitlines()
    assert lines and max(cell_len(line.rstrip()) for line in lines) <= 80, out
    header = next(line for line in lines if headers[0] in line)
    words = header.split()
    for h in headers:
        assert h in words, f"header {h!r} not whole in {header!r}\n{out}"


def test_traces_list_fits_80_columns_with_whole_headers_and_cut_names(spans: Path, narrow: None,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["traces", "list"], capsys)
    assert code == 0
    _assert_fits(out, ["trace", "name", "kind", "start_time", "duration_ms", "spans", "errors"])
    assert "…" in out and LONG not in out
    ids = json.loads(_cli(["traces", "list", "-f", "json"], capsys)[1])
    assert all(r["trace_id"][:12] in out for r in ids)  # a prefix `traces show` accepts
    assert {r["name"] for r in ids} == {f"{LONG}{i}" for i in range(3)}  # json keeps every value whole
    with tracekit.experiment("exp-with-a-long-name-0001"):  # one more column than 80 columns hold: records
        with tracekit.span("step", kind="agent"):
            pass
    tracekit.flush()
    code, out, _ = _cli(["traces", "list"], capsys)
    assert code == 0 and max(cell_len(line) for line in out.splitlines()) <= 80
    assert "experiment_id  exp-with-a-long-name-0001" in out and out.count("\ntrace ") == 3


def test_sql_table_fits_80_columns_and_falls_back_to_records(spans: Path, narrow: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["sql", "SELECT name, kind, status, duration_ms, input FROM spans ORDER BY name"], capsys)
    assert code == 0
    _assert_fits(out, ["name", "kind", "status", "duration_ms", "input"])
    code, out, _ = _cli(["sql", "SELECT * FROM spans ORDER BY name LIMIT 2"], capsys)  # 21 columns: no table fits
    assert code == 0 and max(cell_len(line) for line in out.splitlines()) <= 80
    keys = [line.split()[0] for line in out.splitlines() if line.strip() and not line.startswith("2 rows")]
    assert keys.count("trace_id") == 2 and keys.count("span_id") == 2 and "parent_span_id" in keys


def test_store_info_fits_80_columns(spans: Path, narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["store", "info"], capsys)
    assert code == 0
    _assert_fits(out.split("\n", 1)[1], ["table", "files", "rows", "bytes"])


def test_eval_tables_fit_80_columns(home: Path, tmp_path: Path, narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "qa.py"
    task.write_text(textwrap.dedent('''
        from tracekit.evals import Dataset, Sample, Task, scorers, task

        @task
        def qa():
            samples = [Sample(id=f"case-{i}", input=i, target=i * 2, split="val") for i in range(4)]
            return Task(name="a-task-with-a-rather-long-name", dataset=Dataset(samples),
                        solver=lambda x: "wrong, and at length: " * 20 if x == 3 else x * 2, scorers=[scorers.exact()])
    '''))
    code, out, _ = _cli(["eval", "run", f"{task}:qa"], capsys)
    assert code == 0
    _assert_fits(out.split("└")[-1], ["case_id", "epoch", "split", "status", "score", "why", "trace"])
    code, out, _ = _cli(["eval", "list"], capsys)
    assert code == 0
    _assert_fits(out, ["run_id", "task", "state", "cases", "errors", "accuracy", "score"])
    code, out, _ = _cli(["eval", "show", "latest"], capsys)
    assert code == 0
    _assert_fits(out.split("└")[-1], ["case_id", "ep", "split", "status", "score", "output", "why", "trace"])


def test_widths_give_way_widest_text_first_and_never_cut_numbers_or_ids() -> None:
    headers = ["id", "n", "note", "description"]
    cells = [["a" * 20, "123456", "short note", "d" * 200]]
    widths = fit(headers, cells, ["fixed", "number", "text", "text"], 60)
    assert widths is not None and widths[:3] == [20, 6, 10] and sum(widths) + 2 * 3 <= 60
    assert fit(headers, cells, ["fixed", "number", "text", "text"], 40) is None  # records then


def test_sql_shows_every_statements_result_in_order(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["sql", "SELECT 'first;' AS a; SELECT 2 AS b; CREATE TEMP VIEW v AS SELECT 3 AS c; "
                                "SELECT c FROM v"], capsys)
    assert code == 0
    assert out.index("statement 1 of 4") < out.index("first;") < out.index("statement 2 of 4") < out.index("statement 4 of 4")
    assert out.split("statement 4 of 4")[1].split()[-3:] == ["3", "1", "row"]


def test_sql_with_several_statements_refuses_a_single_document_format(home: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["sql", "SELECT 1; SELECT 2", "--format", "json"], capsys)
    assert code == 2 and out == "" and "2" in err and "--format table" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _cli(["sql", "SELECT 1 AS one;", "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == [{"one": 1}]
