"""Annotations: stored from Python and the CLI, validated, queryable with everything else (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracekit
from tracekit import StoreError
from tracekit._cli.main import main
from tracekit.store import Database
from tracekit.store._annotations import latest_labels, write_annotation

TRACE = "ab" * 16


def test_python_and_cli_annotations_join_the_traces_and_experiments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    tracekit.annotate("trace", TRACE.upper(), label="good", score=0.9, author="ana", home=home)
    tracekit.annotate("span", f"{TRACE}/{'cd' * 8}", note="the tool call that failed", author="ana", home=home)
    assert main(["annotate", "experiment", "main-0003", "--label", "reject", "--note", "prints a fake metric",
                 "--author", "bo", "--home", str(home)]) == 0
    assert "annotated experiment main-0003" in capsys.readouterr().out
    rows = Database(home).sql("SELECT target_kind, target_id, trace_id, experiment_id, label, score, author, source "
                              "FROM annotations ORDER BY time").fetchall()
    assert rows == [("trace", TRACE, TRACE, None, "good", 0.9, "ana", "python"),
                    ("span", f"{TRACE}/{'cd' * 8}", TRACE, None, None, None, "ana", "python"),
                    ("experiment", "main-0003", None, "main-0003", "reject", None, "bo", "cli")]


def test_the_latest_annotation_of_a_target_wins(tmp_path: Path) -> None:
    write_annotation(tmp_path, "experiment", "main-0001", label="approve", author="ana")
    write_annotation(tmp_path, "experiment", "main-0002", label="approve", author="ana")
    write_annotation(tmp_path, "experiment", "main-0001", label="reject", note="on second thought", author="ana")
    latest = latest_labels(Database(tmp_path), "experiment")
    assert {k: v["label"] for k, v in latest.items()} == {"main-0001": "reject", "main-0002": "approve"}


@pytest.mark.parametrize(("kind", "target", "kw", "message"), [
    ("thing", "x", {"label": "a"}, "use one of trace, span, experiment, eval_case"),
    ("trace", "not-hex", {"label": "a"}, "expected 32 hex digits"),
    ("span", TRACE, {"label": "a"}, "<32 hex trace id>/<16 hex span id>"),
    ("eval_case", "run-1/case", {"label": "a"}, "<eval run id>/<case id>/<epoch>"),
    ("experiment", "../../etc", {"label": "a"}, "is not one"),
    ("experiment", "main-0001", {}, "needs a label, a score or a note"),
    ("experiment", "main-0001", {"label": "two\nlines"}, "one line of at most 200"),
    ("experiment", "main-0001", {"label": "x" * 201}, "one line of at most 200"),
    ("experiment", "main-0001", {"score": float("nan")}, "a finite number"),
    ("experiment", "main-0001", {"note": "n" * (64 * 1024 + 1)}, "at most 65536"),
])
def test_bad_annotations_are_refused_with_what_to_do_and_nothing_is_stored(tmp_path: Path, kind: str, target: str,
                                                                           kw: dict, message: str) -> None:
    with pytest.raises(StoreError) as info:
        write_annotation(tmp_path, kind, target, author="ana", **kw)
    assert message in str(info.value)
    assert not (tmp_path / "annotations").exists() or not list((tmp_path / "annotations").iterdir())


def test_markup_and_escapes_in_an_annotation_are_stored_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = "[bold red]x[/] \x1b]52;c;cHduZWQ=\x07 <script>alert(1)</script>"
    assert main(["annotate", "experiment", "main-0001", "--note", note, "--author", "a", "--home", str(tmp_path)]) == 0
    assert Database(tmp_path).sql("SELECT note FROM annotations").fetchall() == [(note,)]
    assert main(["sql", "--home", str(tmp_path), "SELECT note FROM annotations"]) == 0
    assert "\x1b" not in capsys.readouterr().out
