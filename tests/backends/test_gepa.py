"""GEPA (the real `gepa` package) on tracekit: its rollouts are eval runs in the ledger, its reflection reads traces.

The reflection LLM is a scripted callable (tests/_support/backends.py): no network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracekit.backends import Experiments
from tracekit.backends.gepa import TracekitAdapter, anything_evaluator
from tracekit.evals import Sample

from tests._support.backends import FIXED, SEED, ScriptedLM, samples, task_for

gepa = pytest.importorskip("gepa", reason="the gepa extra: pip install 'tracekit-loop[gepa]'")


def test_a_gepa_run_improves_the_target_and_every_candidate_is_an_experiment_row_with_a_trace(home: Path) -> None:
    exps = Experiments("gepa-run", metric="score", proposer="gepa")
    lm = ScriptedLM()
    result = gepa.optimize(seed_candidate={"prompt": SEED}, trainset=samples(), valset=samples(),
                           adapter=TracekitAdapter(exps, task_for), reflection_lm=lm, max_metric_calls=40,
                           reflection_minibatch_size=3, seed=0)
    assert result.best_candidate["prompt"] == FIXED
    assert result.val_aggregate_scores[result.best_idx] == 1.0
    assert result.val_aggregate_scores[0] == 0.0  # the seed
    rows = exps.rows()
    assert rows and all(r["trace_id"] and r["proposer"] == "gepa" for r in rows)
    from tracekit.optimizer._validate import content_hash

    hashes = {r["content_hash"] for r in rows}
    assert all(content_hash(c) in hashes for c in result.candidates)  # every GEPA candidate is a row
    fixed = [r for r in rows if r["content_hash"] == content_hash({"prompt": FIXED})]
    assert fixed[0]["status"] == "keep" and fixed[0]["parent_id"] and "capitals_v2" in (fixed[0]["diff"] or "")
    assert {r["status"] for r in rows} >= {"baseline", "keep"}
    with_cases = tracekit_sql(home, "SELECT DISTINCT experiment_id FROM eval_results WHERE experiment_id LIKE 'gepa-run-%'")
    assert {r["experiment_id"] for r in rows} == set(with_cases)  # each row's cases are stored, joined by id


def tracekit_sql(home: Path, sql: str) -> list[str]:
    from tracekit.store import Database

    return [r[0] for r in Database(home).sql(sql).fetchall()]


def test_reflective_records_hold_the_stack_trace_and_the_tool_call_that_the_scores_do_not(home: Path) -> None:
    exps = Experiments("gepa-reflect", metric="score", proposer="gepa")
    adapter = TracekitAdapter(exps, task_for)
    batch = adapter.evaluate(samples()[:3], {"prompt": SEED}, capture_traces=True)
    assert batch.scores == [0.0, 0.0, 0.0]
    records = adapter.make_reflective_dataset({"prompt": SEED}, batch, ["prompt"])["prompt"]
    assert len(records) == 3
    for rec in records:
        assert "LookupError" in rec["Feedback"] and "moved to 'capitals_v2'" in rec["Feedback"]  # the error, from the trace
        assert "traceback tail" in rec["Feedback"] and "in lookup" in rec["Feedback"]  # its stack
        assert "tool lookup(" in rec["Feedback"] and '"table": "capitals"' in rec["Feedback"]  # the tool call and its arguments
        assert rec["trace_id"] and rec["experiment_id"] == batch.trajectories[0]["experiment_id"]
    scores_only = TracekitAdapter(exps, task_for, feedback="scores")
    plain = scores_only.make_reflective_dataset({"prompt": SEED}, scores_only.evaluate(samples()[:3], {"prompt": SEED}, True),
                                                ["prompt"])["prompt"]
    assert all("capitals_v2" not in str(rec) and "lookup" not in str(rec) for rec in plain)


def test_reflective_dataset_stays_within_its_size_budget_failing_cases_first(home: Path) -> None:
    exps = Experiments("gepa-budget", metric="score", proposer="gepa")
    many = [Sample("France", "Paris", id=f"c{i:02d}") for i in range(12)] + [Sample("x" * 50_000, "y", id="huge")]
    adapter = TracekitAdapter(exps, task_for, budget=6000, record_budget=1500)
    batch = adapter.evaluate(many, {"prompt": FIXED}, capture_traces=True)
    records = adapter.make_reflective_dataset({"prompt": FIXED}, batch, ["prompt"])["prompt"]
    assert sum(len(str(v)) for rec in records for v in rec.values()) <= 6000 + 1500 + 4500  # at most one record over
    assert records[0]["Inputs"].startswith("xxxx")  # the one failing case comes first
    assert all(len(rec["Feedback"]) <= 1500 + 100 for rec in records)


def test_hostile_component_names_are_invalid_experiments_and_write_nothing_outside(home: Path, tmp_path: Path) -> None:
    exps = Experiments("gepa-hostile", metric="score", proposer="gepa")
    adapter = TracekitAdapter(exps, task_for)
    escape = tmp_path / "escaped.txt"
    for name in ["../../escaped.txt", str(escape), "a/../../x", "nul\0name"]:
        batch = adapter.evaluate(samples()[:2], {name: "pwned"}, capture_traces=True)
        assert batch.scores == [0.0, 0.0]
        assert "candidate file" in (batch.trajectories[0]["error"] or "")
    assert not escape.exists() and not list(tmp_path.rglob("escaped.txt"))
    rows = exps.rows()
    assert [r["status"] for r in rows] == ["invalid"] * 4 and all("candidate file" in (r["error"] or "") for r in rows)


def test_anything_evaluator_returns_the_score_and_the_runs_trace_digest(home: Path, tmp_path: Path) -> None:
    """optimize_anything with a command target: each candidate runs in the sandbox; side info is its digest."""
    exps = Experiments("gepa-anything", metric="score", proposer="gepa")
    evaluate = anything_evaluator(exps, ["python", "-c", _RUN_CANDIDATE], budget_s=30)
    seed = "table: capitals"
    score, side = evaluate(seed)
    assert score == 0.0 and side["status"] == "crash"
    assert "LookupError" in side["trace"] and "moved to 'capitals_v2'" in side["trace"] and "Traceback" in side["trace"]
    lm = ScriptedLM()
    from gepa.optimize_anything import EngineConfig, GEPAConfig, ReflectionConfig, optimize_anything

    result = optimize_anything(seed, evaluator=evaluate, objective="Name the table that makes the script succeed.",
                               config=GEPAConfig(engine=EngineConfig(max_metric_calls=6, run_dir=str(tmp_path / "oa")),
                                                 reflection=ReflectionConfig(reflection_lm=lm)))
    assert "capitals_v2" in str(result.best_candidate)
    assert any("moved to 'capitals_v2'" in p for p in lm.prompts)  # the digest reached GEPA's reflection
    rows = exps.rows()
    assert rows[0]["status"] == "crash" and any(r["status"] == "keep" or r["metric"] == 1.0 for r in rows)
    assert all(r["trace_id"] for r in rows)
    assert os.environ.get("ANTHROPIC_API_KEY") is None


_RUN_CANDIDATE = (
    "import re\n"
    "text = open('candidate.txt').read()\n"
    "table = re.search(r'table:\\s*(\\w+)', text).group(1)\n"
    "def lookup(table):\n"
    "    if table != 'capitals_v2':\n"
    "        raise LookupError(f'table {table!r} was retired in the schema migration; its rows moved to \\'capitals_v2\\'')\n"
    "    return 'Paris'\n"
    "print('score:', 1.0 if lookup(table) == 'Paris' else 0.0)\n"
)
