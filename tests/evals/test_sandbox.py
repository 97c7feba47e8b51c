"""Command tasks run in the sandbox per case, and an eval run inside a sandbox reporting its metrics."""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

import pytest

import tracekit
from tracekit import EvalError
from tracekit.evals import Sample, Task, run_eval, sandboxed, scorers

SOLVER = '''
import json, os, sys, time
import tracekit

@tracekit.trace(kind="agent")
def solve(text):
    if text == "crash":
        print("parsing the input", file=sys.stderr)
        raise ValueError("bad input: crash")
    if text == "slow":
        time.sleep(60)
    return text.upper()

case = json.load(open(os.environ["TRACEKIT_EVAL_INPUT"]))
assert "target" not in case, "the target must never reach the command"
assert case["id"] == os.environ["TRACEKIT_EVAL_CASE_ID"]
print(solve(case["input"]))
'''

SUITE = '''
import tracekit
from tracekit.evals import Sample, Task, scorers

@tracekit.trace(kind="agent")
def shout(text):
    return text.upper() if text != "b" else "wrong"

suite = Task([Sample("a", "A", id="a"), Sample("b", "B", id="b"), Sample("c", "C", id="c", split="val")],
             solver=shout, scorers=[scorers.exact()])
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "solve.py").write_text(textwrap.dedent(SOLVER))
    (ws / "suite.py").write_text(textwrap.dedent(SUITE))
    return ws


def test_command_task_runs_each_case_in_the_sandbox(home: Path, workspace: Path) -> None:
    task = Task([Sample("abc", "ABC", id="ok"), Sample("crash", "X", id="crash"), Sample("q", "nope", id="wrong")],
                solver=sandboxed(["python", "solve.py"], workspace=workspace, budget_s=60), scorers=[scorers.exact()],
                name="cmd", concurrency=3)
    before = set(Path(tempfile.gettempdir()).glob("tracekit-eval-case-*"))
    report = run_eval(task)
    rows = {r["case_id"]: r for r in report.rows}
    assert rows["ok"]["passed"] and json.loads(rows["ok"]["output"]) == "ABC"
    assert rows["wrong"]["status"] == "ok" and not rows["wrong"]["passed"]
    crash = rows["crash"]
    assert crash["status"] == "error" and crash["error"].startswith("CommandFailed: the command exited with code 1")
    assert "parsing the input" in crash["error"] and "ValueError: bad input: crash" in crash["error"]
    slow = run_eval(Task([Sample("slow", "SLOW", id="slow")], solver=sandboxed(["python", "solve.py"], workspace=workspace,
                                                                                budget_s=3), scorers=[scorers.exact()]))
    assert slow.rows[0]["status"] == "timeout"
    assert slow.rows[0]["error"] == "TimeoutError: the command exceeded its budget of 3s"
    # the sandbox's run span and the command's own spans nest under the case's eval span
    tree = tracekit.query(f"""
        SELECT s.name, s.kind, p.name FROM spans s LEFT JOIN spans p ON p.span_id = s.parent_span_id
        WHERE s.trace_id = '{rows['ok']['trace_id']}' ORDER BY s.start_time""").fetchall()
    assert tree[0] == ("eval/cmd", "eval", None)
    assert ("eval-case ok", "run", "eval/cmd") in tree and ("solve", "agent", "eval-case ok") in tree
    crash_agent = tracekit.query(f"""
        SELECT status, status_message FROM spans WHERE trace_id = '{crash['trace_id']}' AND kind = 'agent'""").fetchall()
    assert crash_agent == [("error", "ValueError: bad input: crash")]
    assert not set(Path(tempfile.gettempdir()).glob("tracekit-eval-case-*")) - before  # case folders are removed


def test_argv_placeholders_and_output_modes(home: Path, workspace: Path) -> None:
    (workspace / "echo.py").write_text(
        "import sys, json, pathlib\n"
        "pathlib.Path('answer.txt').write_text(sys.argv[1][::-1])\n"
        "print(json.dumps({'id': sys.argv[2], 'len': len(sys.argv[1])}))\n")
    cases = [Sample("hello world", id="h"), Sample("abc", id="x")]
    by_file = run_eval(Task(cases, solver=sandboxed(["python", "echo.py", "{input}", "{id}"], workspace=workspace,
                                                    output="file:answer.txt"),
                            scorers=[scorers.python(lambda output, input: output == input[::-1])], name="files"))
    assert by_file.metrics["accuracy"] == 1.0
    as_json = run_eval(Task(cases, solver=sandboxed(["python", "echo.py", "{input}", "{id}"], workspace=workspace,
                                                    output="json"),
                            scorers=[scorers.python(lambda output, sample: output == {"id": sample.id, "len": len(sample.input)})],
                            name="json"))
    assert as_json.metrics["accuracy"] == 1.0
    with pytest.raises(EvalError, match="output='xml'"):
        sandboxed(["python", "x.py"], output="xml")
    with pytest.raises(EvalError, match=r"unknown or reserved options \['budget', 'run_dir'\]"):
        sandboxed(["python", "x.py"], budget=3, run_dir="/tmp/x")
    numbers = run_eval(Task([Sample(3, id="n")], solver=sandboxed(["python", "echo.py", "{input}", "{id}"], workspace=workspace),
                            scorers=[scorers.exact()], name="nonstring"))
    assert "'{input}' in the command needs a string input" in numbers.rows[0]["error"]


def test_eval_inside_a_sandbox_reports_metrics_through_the_contract(home: Path, workspace: Path, tmp_path: Path) -> None:
    from tracekit.sandbox import RunSpec, run

    run_dir = tmp_path / "run"
    result = run(RunSpec(["python", "-m", "tracekit", "eval", "run", "suite.py", "-f", "json"], workspace=workspace,
                         budget_s=120, metric="val.accuracy", experiment_id="exp-7", run_dir=run_dir))
    assert result.status == "ok", result.stderr.text()
    assert result.value == 1.0  # the optimizer keeps / discards on val ...
    assert result.metrics["train.accuracy"] == 0.5 and result.metrics["accuracy"] == pytest.approx(2 / 3)
    # ... and reads the traces of the train cases, which came home with the run
    roots = tracekit.query("""
        SELECT attributes->>'$."tracekit.eval.case_id"', attributes->>'$."tracekit.eval.split"',
               attributes->>'$."tracekit.eval.explanation"', experiment_id
        FROM spans WHERE kind = 'eval' AND parent_span_id IS NULL ORDER BY 1""").fetchall()
    assert roots == [("a", "train", None, "exp-7"), ("b", "train", "'wrong' != 'B'", "exp-7"), ("c", "val", None, "exp-7")]

    # the eval's own rows came home with the run too, tagged with its experiment
    rows = tracekit.query("SELECT case_id, split, passed, experiment_id FROM eval_results ORDER BY case_id").fetchall()
    assert rows == [("a", "train", True, "exp-7"), ("b", "train", False, "exp-7"), ("c", "val", True, "exp-7")]
    runs = tracekit.query("SELECT event, experiment_id FROM eval_runs ORDER BY time").fetchall()
    assert runs == [("started", "exp-7"), ("finished", "exp-7")]
    linked = tracekit.query("""
        SELECT count(*) FROM eval_results r JOIN spans s ON s.trace_id = r.trace_id AND s.kind = 'agent'""").fetchall()
    assert linked == [(3,)]
