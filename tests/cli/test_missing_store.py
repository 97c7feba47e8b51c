"""Silent emptiness: a query against a store folder that does not exist says so (a warning naming the
folder and how to point at the right one); an existing empty store stays quiet; `store info` refuses."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import tracekit
from tracekit._cli.main import main
from tracekit._errors import StoreWarning


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_query_on_a_missing_store_warns_naming_the_folder_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo-home"
    with pytest.warns(StoreWarning, match=r"no tracekit store at .*typo-home \(the folder does not exist\).*--home.*TRACEKIT_HOME"):
        assert tracekit.query("SELECT count(*) FROM spans", home=missing).fetchall() == [(0,)]
    assert not missing.exists()


def test_query_on_an_existing_empty_store_is_quiet(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tracekit.query("SELECT count(*) FROM traces", home=fresh).fetchall() == [(0,)]


@pytest.mark.parametrize("args", [["sql", "SELECT count(*) AS n FROM spans"], ["traces", "list"], ["eval", "list"]])
def test_cli_queries_on_a_missing_store_print_one_warning_line(args: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo-home"
    code, out, err = _cli([*args, "--home", str(missing)], capsys)
    assert code == 0 and ("0 rows" in out or "1 row" in out)
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: no tracekit store at") and str(missing) in line
    assert "--home" in line and "TRACEKIT_HOME" in line and "Traceback" not in err
    assert not missing.exists()


def test_cli_query_on_a_project_folder_points_at_its_store(home: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    (project / ".tracekit" / "spans").mkdir(parents=True)
    code, _, err = _cli(["sql", "SELECT 1", "--home", str(project)], capsys)
    assert code == 0 and "warning: no tracekit tables in" in err and str(project / ".tracekit") in err


def test_cli_query_on_an_existing_store_is_quiet(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["sql", "SELECT count(*) FROM spans", "--home", str(home)], capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize("command", [["store", "info"], ["store", "compact"]])
def test_store_info_and_compact_refuse_a_home_that_is_not_a_store(command: list[str], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo-home"
    code, out, err = _cli([*command, "--home", str(missing)], capsys)
    assert code == 2 and out == "" and "does not exist" in err and str(missing) in err and "--home" in err
    assert not missing.exists()
    afile = tmp_path / "a-file"
    afile.write_text("not a store")
    code, out, err = _cli([*command, "--home", str(afile)], capsys)
    assert code == 2 and "is a file, not a folder" in err and afile.read_text() == "not a store"
