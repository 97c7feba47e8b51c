"""OpenEvolve (the real `openevolve` package) on tracekit: programs run in the sandbox, artifacts come from traces.

Its LLM is a scripted client (`LLMModelConfig.init_client`, tests/_support/backends.py): no network.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tracekit.backends import Experiments
from tracekit.backends.openevolve import SandboxEvaluator

from tests._support.backends import PROGRAM, PROMPT_LOG, scripted_client

openevolve = pytest.importorskip("openevolve", reason="the openevolve extra: pip install 'tracekit-loop[openevolve]'")


def test_artifacts_hold_the_stack_trace_and_the_tool_span_that_the_metrics_do_not(home: Path, tmp_path: Path) -> None:
    exps = Experiments("evolve-artifacts", metric="score", proposer="openevolve")
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    result = SandboxEvaluator(exps, ["python", "program.py"])(str(program))
    assert result.metrics["combined_score"] == 0.0 and result.metrics["ok"] == 0.0
    errors = result.artifacts["errors"]
    assert "LookupError" in errors and "moved to 'capitals_v2'" in errors
    assert "stack trace (from its spans)" in errors and "(span lookup)" in errors and "Traceback" in errors
    assert "lookup (tool)" in result.artifacts["slowest"]
    assert result.artifacts["trace_id"] and result.artifacts["experiment_id"] == exps.rows()[0]["experiment_id"]
    assert "capitals_v2" not in repr(result.metrics)


def test_one_openevolve_iteration_records_every_program_as_an_experiment_and_its_prompt_reads_the_trace(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openevolve.config import Config, LLMModelConfig

    log = tmp_path / "prompts.log"
    monkeypatch.setenv(PROMPT_LOG, str(log))
    exps = Experiments("evolve-run", metric="score", proposer="openevolve")
    evaluator = SandboxEvaluator(exps, ["python", "program.py"], budget_s=60)
    config = Config()
    config.llm.models = [LLMModelConfig(name="scripted", init_client=scripted_client)]
    config.llm.evaluator_models = list(config.llm.models)
    config.evaluator.cascade_evaluation = False
    config.evaluator.parallel_evaluations = 1
    config.evaluator.timeout = 120
    result = openevolve.run_evolution(PROGRAM, evaluator, config=config, iterations=1, output_dir=str(tmp_path / "oe"),
                                      cleanup=False)
    assert 'TABLE = "capitals_v2"' in result.best_code and result.metrics["combined_score"] == 1.0
    prompts = log.read_text()
    assert "moved to 'capitals_v2'" in prompts and "(span lookup)" in prompts  # the artifacts reached the LLM
    rows = exps.rows()
    assert [r["status"] for r in rows] == ["crash", "baseline"]  # the seed crashed; the child is the first to score
    assert all(r["trace_id"] and r["proposer"] == "openevolve" for r in rows)
    assert 'TABLE = "capitals_v2"' in (rows[1]["diff"] or "")


def test_the_evaluator_pickles_without_its_store_and_works_in_a_fresh_copy(home: Path, tmp_path: Path) -> None:
    exps = Experiments("evolve-pickle", metric="score", proposer="openevolve")
    copy = pickle.loads(pickle.dumps(SandboxEvaluator(exps, ["python", "program.py"])))
    program = tmp_path / "p.py"
    program.write_text(PROGRAM.replace('TABLE = "capitals"', 'TABLE = "capitals_v2"'))
    metrics, _ = copy.evaluate(str(program))
    assert metrics["combined_score"] == 1.0 and exps.rows()[0]["metric"] == 1.0


def test_an_oversized_program_is_an_invalid_experiment_not_a_run(home: Path, tmp_path: Path) -> None:
    exps = Experiments("evolve-big", metric="score", proposer="openevolve")
    program = tmp_path / "big.py"
    program.write_text("x = 1\n" * 2_000_000)
    metrics, artifacts = SandboxEvaluator(exps, ["python", "program.py"]).evaluate(str(program))
    assert metrics["ok"] == 0.0 and "MiB" in artifacts["error"]
    assert exps.rows()[0]["status"] == "invalid"
