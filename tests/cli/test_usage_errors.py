"""A user's mistake on the command line is one line and exit 2, never a traceback; help names values, not types.

The mistakes the issue lists run through the real entry point (`python -m tracekit`); every
subcommand, with an unknown option and with a bad value for each typed option, is generated from
the typer app itself and run in-process through `main()`, so a command added later is covered
without editing this file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from tracekit import __version__
from tracekit._cli.main import app, main

PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|file|dir|datetime|list\[\w+\])>")  # typer's type placeholders


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(path, command)]
    return [leaf for name, sub in sorted(subs.items()) for leaf in _leaves(sub, (*path, name))]


def _groups(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", None) or {}
    return ([path] if subs else []) + [g for name, sub in sorted(subs.items()) for g in _groups(sub, (*path, name))]


LEAVES = _leaves(get_command(app))
GROUPS = _groups(get_command(app))


def _required_args(command: Any) -> list[str]:
    """Placeholder values for the command's required arguments, so the parser reaches the options."""
    out: list[str] = []
    for p in command.params:
        if getattr(p, "param_type_name", "") == "argument" and p.required:
            out.append("x")
    return out


def _typed_options(command: Any) -> list[str]:
    """Options whose value typer converts to a number: any word is a bad value for them."""
    out = []
    for p in command.params:
        desc = getattr(p, "type_descriptor", None)
        annotation = getattr(desc, "annotation", None)
        if getattr(p, "param_type_name", "") == "option" and not p.is_flag and annotation in (int, float):
            out.append(max(p.opts, key=len))
    return out


def _assert_one_line(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "needles"), [
    ([], ["missing command", "sql", "traces", "Try 'tracekit --help'"]),
    (["nope"], ["No such command 'nope'", "Try 'tracekit --help'"]),
    (["sql", "--nope"], ["--nope", "Try 'tracekit sql --help'"]),
    (["sandbox", "run", "--budget", "abc", "--", "echo", "hi"], ["--budget", "Try 'tracekit sandbox run --help'"]),
    (["optimize"], ["missing command", "run", "Try 'tracekit optimize --help'"]),
    (["traces", "list", "--limit"], ["--limit", "requires an argument", "Try 'tracekit traces list --help'"]),
])
def test_usage_mistakes_of_the_issue_are_one_line_and_exit_2(args: list[str], needles: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "tracekit", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    _assert_one_line(proc.returncode, proc.stdout, proc.stderr, *needles)
    assert proc.stdout == ""  # no help page printed as the error
    assert not (tmp_path / ".tracekit").exists()  # nothing ran


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_subcommand_refuses_an_unknown_option_in_one_line(path: tuple[str, ...], command: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli([*path, *_required_args(command), "--no-such-option"], capsys)
    _assert_one_line(code, out, err, "--no-such-option", f"Try 'tracekit {' '.join(path)} --help'")


BAD_VALUES = [(path, command, opt) for path, command in LEAVES for opt in _typed_options(command)]


@pytest.mark.parametrize(("path", "command", "option"), BAD_VALUES,
                         ids=[f"{' '.join(p)} {o}" for p, _, o in BAD_VALUES])
def test_every_typed_option_refuses_a_bad_value_in_one_line(path: tuple[str, ...], command: Any, option: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli([*path, *_required_args(command), option, "abc"], capsys)
    _assert_one_line(code, out, err, option, f"Try 'tracekit {' '.join(path)} --help'")


FORMATS = [(path, command) for path, command in LEAVES if any("--format" in p.opts for p in command.params)]


@pytest.mark.parametrize(("path", "command"), FORMATS, ids=[" ".join(p) for p, _ in FORMATS])
def test_every_format_option_refuses_an_unknown_format_before_any_work(path: tuple[str, ...], command: Any,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli([*path, *_required_args(command), "--format", "xml"], capsys)
    _assert_one_line(code, out, err, "--format", "'xml'", f"Try 'tracekit {' '.join(path)} --help'")


@pytest.mark.parametrize(("args", "needles"), [
    (["traces", "list", "--limit", "-5"], ["--limit", "greater than or equal to 1"]),
    (["eval", "list", "-n", "0"], ["--limit"]),
    (["traces", "show", "abc", "--width", "3"], ["--width"]),
])
def test_a_number_out_of_range_is_refused_when_parsed(args: list[str], needles: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(args, capsys)
    _assert_one_line(code, out, err, *needles)


def test_a_path_that_cannot_be_used_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = "/proc/tracekit-no-such-folder/run"
    code, out, err = _cli(["sandbox", "run", "--workspace", str(tmp_path), "--home", str(tmp_path / "h"),
                           "--run-dir", bad, "--", "true"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "/proc/tracekit-no-such-folder" in line and "No such file or directory" in line


def test_a_choice_option_refuses_other_values_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["serve", "--log-level", "loud", "--home", str(tmp_path / "h"), "--port", "0"], capsys)
    _assert_one_line(code, out, err, "--log-level", "'loud'", "Try 'tracekit serve --help'")
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("args", [
    ["sql", "--format", "x\x1b]52;c;ZXZpbA==\x07\nline two"],
    ["no\x1b[2Jpe\nline two"],
    ["traces", "list", "--no\x1b[2J\rpe"],
])
def test_bad_input_is_quoted_on_one_line_with_control_characters_inert(args: list[str],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(args, capsys)
    _assert_one_line(code, out, err)
    assert not [c for c in err.rstrip("\n") if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0], repr(err)


@pytest.mark.parametrize("path", GROUPS, ids=[" ".join(p) or "tracekit" for p in GROUPS])
def test_a_group_without_its_subcommand_names_them_in_one_line(path: tuple[str, ...],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(list(path), capsys)
    _assert_one_line(code, out, err, "missing command", f"Try '{' '.join(('tracekit', *path))} --help'")
    assert out == ""


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"tracekit {__version__}" and err == ""


HELP_PAGES = [(), *GROUPS[1:], *(p for p, _ in LEAVES)]


@pytest.mark.parametrize("path", HELP_PAGES, ids=[" ".join(p) or "tracekit" for p in HELP_PAGES])
def test_help_names_values_not_python_types(path: tuple[str, ...], capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _cli([*path, "--help"], capsys)
    assert code == 0, err
    assert not PLACEHOLDER.search(out), f"type placeholder in help of {' '.join(path)}:\n{out}"


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_help_has_an_example(path: tuple[str, ...], command: Any, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _cli([*path, "--help"], capsys)
    assert code == 0 and re.search(rf"Example: tracekit {path[0]}\b", out), out
