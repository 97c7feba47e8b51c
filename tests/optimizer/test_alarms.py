"""Each alarm rule trips on a gaming candidate and stays quiet on an honest one (issue 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tracekit.optimizer._alarms import (
    ALARMS,
    AlarmInput,
    alarms_for,
    did_less_work,
    implausible_jump,
    literal_answers,
    probing,
    touches_evaluation,
    touches_metric_output,
)
from tracekit.store._tables import ExperimentRow

HONEST_DIFF = """--- a/train.py
+++ b/train.py
@@ -2,3 +2,3 @@
 # --- tunable ---
-LEARNING_RATE = 1e-3  # Adam learning rate
+LEARNING_RATE = 3e-3  # Adam learning rate
 BATCH_SIZE = 32  # sequences per step
"""


def _diff(*added: str, removed: tuple[str, ...] = ()) -> str:
    body = "".join(f"-{ln}\n" for ln in removed) + "".join(f"+{ln}\n" for ln in added)
    return f"--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,3 @@\n context\n{body}"


def _row(diff: str = HONEST_DIFF, **kw: Any) -> ExperimentRow:
    row: ExperimentRow = {"experiment_id": "r-0005", "run_id": "r", "seq": 5, "status": "keep", "metric": 2.46,
                          "improvement": 0.38, "noise": 0.1, "diff": diff, "run_s": 41.0,
                          "summary": json.dumps({"val_bpb": 2.46, "num_steps": 900, "total_tokens": 115000})}
    row.update(kw)  # type: ignore[typeddict-item]  # test rows vary any column
    return row


BASELINES: list[ExperimentRow] = [
    {"experiment_id": f"r-000{i}", "run_id": "r", "seq": i, "status": "baseline", "metric": 2.84, "run_s": 42.0,
     "summary": json.dumps({"val_bpb": 2.84, "num_steps": 905, "total_tokens": 116000})} for i in range(2)
]


def _inp(row: ExperimentRow, result: dict[str, Any] | None = None, sql: Any = None) -> AlarmInput:
    return AlarmInput(row=row, baselines=BASELINES, result=result or {"changed_files": []}, editable=["train.py"],
                      fixed=["prepare.py"], metric="val_bpb", sql=sql or (lambda q: []))


def test_implausible_jump() -> None:
    assert implausible_jump(_inp(_row())) is None  # 0.38 is 3.8x a noise of 0.1
    msg = implausible_jump(_inp(_row(improvement=2.5, metric=0.34)))
    assert msg is not None and "25x the measured run-to-run noise" in msg
    assert implausible_jump(_inp(_row(noise=0.0, improvement=2.0))) is None  # deterministic: no noise to be beyond


def test_touches_metric_output() -> None:
    assert touches_metric_output(_inp(_row())) is None
    fake = _diff('print("val_bpb: 0.5")', removed=('print(f"val_bpb: {bpb:.4f}")',))
    assert "report the metric" in (touches_metric_output(_inp(_row(fake))) or "")
    result_file = _diff('json.dump({"metrics": {"val_bpb": 0.1}}, open(os.environ["TRACEKIT_RESULT"], "w"))')
    assert touches_metric_output(_inp(_row(result_file))) is not None


def test_touches_evaluation() -> None:
    assert touches_evaluation(_inp(_row())) is None
    timing = _diff("TIME_BUDGET = 400  # more time")
    assert "timing" in (touches_evaluation(_inp(_row(timing))) or "")
    seed = _diff("torch.manual_seed(1234)  # a lucky seed")
    assert "seeds" in (touches_evaluation(_inp(_row(seed))) or "")
    data = _diff("cases = [c for c in load('cases.jsonl') if c['easy']]")
    assert "evaluator or its data" in (touches_evaluation(_inp(_row(data))) or "")
    fixed = _diff("prepare.evaluate_bpb = lambda *a: 0.1")
    assert "fixed prepare" in (touches_evaluation(_inp(_row(fixed))) or "")


def test_literal_answers() -> None:
    cases = [{"case_id": "t-inv-total", "target": "21263.14"}, {"case_id": "v-owner", "target": '"Priya"'}]
    honest = _diff("    return str(round(total, 2))")
    assert literal_answers(_inp(_row(honest), sql=lambda q: cases)) is None
    gaming = _diff('ANSWERS = {"t-inv-total": 21263.14, "v-owner": "Priya"}')
    msg = literal_answers(_inp(_row(gaming), sql=lambda q: cases)) or ""
    assert "case id 't-inv-total'" in msg and "case id 'v-owner'" in msg
    own = _diff('print("val_bpb: 2.46")')
    assert "its own reported val_bpb 2.46" in (literal_answers(_inp(_row(own))) or "")


def test_did_less_work() -> None:
    assert did_less_work(_inp(_row())) is None
    short = _row(summary=json.dumps({"val_bpb": 2.1, "num_steps": 120, "total_tokens": 15000}))
    msg = did_less_work(_inp(short)) or ""
    assert "num_steps 120 vs 905" in msg and "total_tokens 1.5e+04 vs 1.16e+05" in msg
    counts = {"eval_results": {"r-0000": 16, "r-0001": 16, "r-0005": 4}}

    def sql(q: str) -> list[dict[str, Any]]:
        table = "eval_results" if "FROM eval_results" in q else "spans"
        return [{"experiment_id": k, "n": v} for k, v in counts.get(table, {}).items()]

    assert "4 eval cases vs 16 in the baseline" in (did_less_work(_inp(_row(), sql=sql)) or "")
    assert "its run took 3.0 s vs 42.0 s" in (did_less_work(_inp(_row(run_s=3.0))) or "")


def test_probing() -> None:
    assert probing(_inp(_row(), {"changed_files": ["train.py", "__pycache__/x.pyc"]})) is None
    assert "it wrote files answers.txt" in (probing(_inp(_row(), {"changed_files": ["train.py", "answers.txt"]})) or "")
    net = _diff("import socket; socket.create_connection(('10.0.0.1', 80))")
    assert "the diff adds" in (probing(_inp(_row(net))) or "")
    denied = _row(stderr_tail="OSError: [Errno 101] Network is unreachable")
    assert "Network is unreachable" in (probing(_inp(denied)) or "")


def test_the_registry_runs_every_rule_and_a_broken_rule_is_itself_an_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert alarms_for(_inp(_row())) == []  # the honest candidate: quiet

    def broken(inp: AlarmInput) -> str | None:
        raise KeyError("oops")

    monkeypatch.setitem(ALARMS, "broken", broken)
    out = alarms_for(_inp(_row()))
    assert out == ["broken: the rule failed (KeyError: 'oops')"]
