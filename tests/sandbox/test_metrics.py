"""The metric contract: the result file (safe reading, validation), the stdout fallbacks, the status order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekit.sandbox import run
from tracekit.sandbox._metrics import decide_status, metric_problem, parse_result_json, parse_stdout, read_result_file

from tests._support.sandbox import marker, py, spec


def test_parse_result_json() -> None:
    r = parse_result_json(b'{"metrics": {"val_bpb": 0.99, "steps": 3}, "notes": "x"}')
    assert r.metrics == {"val_bpb": 0.99, "steps": 3.0} and r.source == "result_json" and r.error is None
    assert parse_result_json(b'{"metrics": {"a": NaN, "b": 1}}').nonfinite == ["a"]
    for bad, why in [(b'{"metrics": {', "not valid JSON"), (b"[1, 2]", '"metrics" object'),
                     (b'{"metrics": {"a": "0.5"}}', "expected a number"), (b'{"metrics": {"a": true}}', "expected a number"),
                     (b'{"metrics": [1]}', '"metrics" object'), (b"\xff\xfe", "not valid JSON")]:
        assert why in (parse_result_json(bad).error or ""), bad


def test_parse_stdout_fallbacks() -> None:
    text = "METRIC loss=2.5\nstep 1\nMETRIC loss=1.5\nMETRIC acc = 0.9\nval_bpb: 1.10\nval_bpb:   0.99  \nMETRIC bad=abc\n"
    r = parse_stdout(text, "val_bpb")
    assert r.metrics == {"loss": 1.5, "acc": 0.9, "val_bpb": 0.99} and r.source == "stdout"
    assert parse_stdout("val_bpb: 0.99\n", None).metrics == {}  # `name: value` only for the configured metric
    assert parse_stdout("METRIC x=nan\n", None).nonfinite == ["x"]
    assert parse_stdout("val_bpb: inf\n", "val_bpb").nonfinite == ["val_bpb"]
    assert parse_stdout("the METRIC x=1 is mid-line\n", None).metrics == {}


def test_metric_problem_and_status_precedence() -> None:
    ok = parse_stdout("METRIC a=1\n", None)
    assert metric_problem(ok, None) is None and metric_problem(ok, "a") is None
    assert "'b' was not reported" in (metric_problem(ok, "b") or "")
    assert "no metric reported" in (metric_problem(parse_stdout("", None), None) or "")
    assert "non-finite" in (metric_problem(parse_stdout("METRIC a=1\nMETRIC b=nan\n", None), "a") or "")
    base = dict(killed=False, timed_out=False, oom=False, output_limit=False, exit_code=0, signal=None, metric_error=None)
    assert decide_status(**base) == "ok"
    assert decide_status(**{**base, "metric_error": "none"}) == "no_metric"
    assert decide_status(**{**base, "exit_code": 2, "metric_error": "none"}) == "crash"
    assert decide_status(**{**base, "exit_code": None, "signal": 11}) == "crash"
    assert decide_status(**{**base, "output_limit": True, "exit_code": 1}) == "output_limit"
    assert decide_status(**{**base, "oom": True, "output_limit": True}) == "oom"
    assert decide_status(**{**base, "timed_out": True, "oom": True}) == "timeout"
    assert decide_status(**{**base, "killed": True, "timed_out": True}) == "killed"


def test_result_file_is_read_safely(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text('{"metrics": {"a": 1}}')
    assert read_result_file(tmp_path, "result.json", 1000) is None
    (tmp_path / "result.json").symlink_to(tmp_path / "real.json")
    assert "symlink" in (read_result_file(tmp_path, "result.json", 1000).error or "")  # type: ignore[union-attr]
    (tmp_path / "result.json").unlink()
    (tmp_path / "result.json").mkdir()
    assert "not a regular file" in (read_result_file(tmp_path, "result.json", 1000).error or "")  # type: ignore[union-attr]
    (tmp_path / "result.json").rmdir()
    (tmp_path / "result.json").write_text(json.dumps({"metrics": {"a": 1}, "pad": "x" * 2000}))
    assert "larger than 1000 bytes" in (read_result_file(tmp_path, "result.json", 1000).error or "")  # type: ignore[union-attr]


@pytest.mark.parametrize(("content", "why"), [
    ('{"metrics": {"val_bpb": NaN}}', "non-finite"),
    ('{"metrics": {"val_bpb": Infinity}}', "non-finite"),
    ('{"metrics": {"val_bpb": 0.9', "not valid JSON"),
    ('"just a string"', '"metrics" object'),
    ("SIZE", "larger than"),
])
def test_bad_result_files_give_no_metric(tmp_path: Path, content: str, why: str) -> None:
    m = marker()
    code = f"""
        import os
        data = {content!r}
        if data == 'SIZE':
            data = '{{"metrics": {{"val_bpb": 1.0}}, "pad": "' + 'x' * (2 << 20) + '"}}'
        open(os.environ['TRACEKIT_RESULT'], 'w').write(data)
        print('METRIC val_bpb=0.5')   # ignored: a result file exists, so it is the only source
    """
    res = run(spec(tmp_path, py(code, m), metric="val_bpb"))
    assert res.status == "no_metric"
    assert why in (res.error or ""), res.error
    assert res.value is None


def test_result_file_as_symlink_is_refused(tmp_path: Path) -> None:
    m = marker()
    code = """
        import json, os
        json.dump({'metrics': {'score': 100.0}}, open('forged.json', 'w'))
        os.symlink(os.path.abspath('forged.json'), os.environ['TRACEKIT_RESULT'])
    """
    res = run(spec(tmp_path, py(code, m), metric="score"))
    assert res.status == "no_metric"
    assert "symlink" in (res.error or "")
    assert res.metrics == {}


def test_missing_metric_is_never_zero(tmp_path: Path) -> None:
    res = run(spec(tmp_path, py("print('trained, but forgot to report')", marker()), metric="val_bpb"))
    assert res.status == "no_metric"
    assert res.metrics == {} and res.value is None
    assert "'val_bpb' was not reported" in (res.error or "")
