"""examples/agent-harness offline: the optimizer's Anthropic proposer (a scripted meta-agent on the local
Messages API server) edits the task agent's harness.py, reading failing train cases and trajectories."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import anthropic
import pytest

import tracekit
from tracekit._cli.main import main
from tracekit.optimizer import Optimizer, load_target

from tests._support import DOCS, EXAMPLES
from tests._support.examples import load
from tests._support.harness_sim import META_MODEL, TASK_MODEL, fired, responder
from tests._support.messages_server import MessagesServer

EXAMPLE = EXAMPLES / "agent-harness"
ModelProxy = load("agent-harness", "model_proxy").ModelProxy

VAL_AND_TEST = [line.split('"')[3] for f in ("cases.jsonl", "holdout.jsonl") for line in (EXAMPLE / f).read_text().splitlines()
                if '"split": "val"' in line or '"split": "test"' in line]


@pytest.fixture
def server() -> MessagesServer:
    with MessagesServer(responder) as s:
        fired.clear()
        yield s  # type: ignore[misc]


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "agent-harness"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    return dst


def _optimize(target_dir: Path, server: MessagesServer, proxy: ModelProxy, feedback: str, iterations: int,
              monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "meta-agent-key")  # the proposer's key (outside the sandbox)
    target = load_target(target_dir, {"env": {"ANTHROPIC_BASE_URL": proxy.url, "TRACEKIT_AGENT_MODEL": TASK_MODEL},
                                      "baseline_runs": 1, "budget_s": 120})
    return Optimizer(target, home=target_dir / ".tracekit", proposer="anthropic",
                     proposer_options={"base_url": server.url, "model": META_MODEL}, iterations=iterations,
                     target_value=1.0, feedback=feedback).run()


def test_meta_agent_fixes_the_harness_and_the_sealed_split_agrees(target_dir: Path, server: MessagesServer, home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with ModelProxy("host-held-key", upstream=server.url) as proxy:
        summary = _optimize(target_dir, server, proxy, "traces", 6, monkeypatch)
        capsys.readouterr()
        # the morning after: the holdout report, the optimized split (val) next to the sealed one (test)
        code = main(["optimize", "holdout", str(target_dir), "--home", str(target_dir / ".tracekit")])
        report = capsys.readouterr().out
    rows = [(r["status"], round(r["metric"], 3) if r["metric"] is not None else None) for r in summary.rows]  # type: ignore[attr-defined]
    why = [f"{r.get('experiment_id')} {r['status']} ({r.get('run_status')}): {r.get('error')}\n{r.get('stderr_tail') or ''}"
           for r in summary.rows if r["status"] in ("crash", "timeout", "invalid")]  # type: ignore[attr-defined]
    assert rows == [("baseline", 0.286), ("keep", 0.571), ("keep", 0.714), ("keep", 0.857), ("keep", 1.0)], "\n".join(why)
    assert fired == ["tool-results", "tool-errors", "turns", "answer-line"]  # each defect found from its evidence
    assert summary.stop_reason.startswith("target value")  # type: ignore[attr-defined]
    assert code == 0, report
    assert ("holdout of main-0004: optimized split (val.accuracy) gain +0.7143; sealed split (accuracy) "
            "0.3333 -> 1, gain +0.6667 over 1 run(s) each. No overfitting alarm.") in report
    held = json.loads(next((target_dir / ".tracekit" / "optimizer" / "main").glob("holdout-*.json")).read_text())
    assert held["alarm"] is None and held["sealed_files"] == {"holdout.jsonl": hashlib.sha256(
        (EXAMPLE / "holdout.jsonl").read_bytes()).hexdigest()}
    sealed_ids = [line.split('"')[3] for line in (EXAMPLE / "holdout.jsonl").read_text().splitlines()]
    scored = tracekit.query("SELECT DISTINCT case_id FROM eval_results WHERE split = 'test' ORDER BY 1",
                            home=target_dir / ".tracekit").fetchall()
    assert [c for (c,) in scored] == sorted(sealed_ids)  # scored by the holdout only: no loop run had them
    loop_ids = [r["experiment_id"] for r in summary.rows]  # type: ignore[attr-defined]
    assert not tracekit.query(f"SELECT 1 FROM eval_results WHERE split = 'test' AND experiment_id IN "
                              f"({', '.join(repr(i) for i in loop_ids)})", home=target_dir / ".tracekit").fetchall()

    task_calls = [r for r in server.message_requests() if r.body and r.body["model"] == TASK_MODEL]
    meta_calls = [r for r in server.message_requests() if r.body and r.body["model"] == META_MODEL]
    assert task_calls and {r.headers["x-api-key"] for r in task_calls} == {"host-held-key"}  # added by the proxy
    assert len(meta_calls) == 4
    first = meta_calls[0].text
    assert "## Failing eval cases (train split) of the incumbent and recent runs" in first
    assert "## Trajectories of failing train cases of the incumbent (LLM and tool calls)" in first
    assert "[... cut at 300 characters]" in first and "the model was sent: read_file failed." in first
    assert "still calling tools after 3 turns" in first
    for call in meta_calls:  # the optimizer never sees val or test cases
        assert not [cid for cid in VAL_AND_TEST if cid in call.text]
        assert "How many units are in stock in total" not in call.text and "in which room" not in call.text

    # the tutorial's SQL, on this run's store: eval rows came home tagged with their experiment
    queries = re.findall(r"```sql\n(.*?)```", (DOCS / "tutorial-agent-harness.md").read_text(), re.S)
    per_exp, tool_errors, tokens = (tracekit.query(q, home=target_dir / ".tracekit").fetchall() for q in queries)
    assert [(r[1], r[3]) for r in per_exp] == [("baseline", 0.167), ("keep", 0.5), ("keep", 0.667), ("keep", 0.833),
                                              ("keep", 1.0)]
    assert ("main-0000", "t-beta-days", "read_file",
            "ToolError: no file 'notes/meeting-notes.md' in the workspace (use list_files)") in tool_errors
    assert [e for e, *_ in tokens][:5] == loop_ids and tokens[5][0].startswith("main-holdout-")  # the holdout's own
    assert len(tokens) == 6 and all(n > 0 and tin > 0 for _, n, tin, _ in tokens)


def test_scores_feedback_leaves_the_evidence_out(target_dir: Path, server: MessagesServer, home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with ModelProxy("host-held-key", upstream=server.url) as proxy:
        summary = _optimize(target_dir, server, proxy, "scores", 1, monkeypatch)
    assert fired == ["none"]
    prompt = [r for r in server.message_requests() if r.body and r.body["model"] == META_MODEL][0].text
    assert "Failing eval cases" not in prompt and "Trajectories" not in prompt and "cut at 300" not in prompt
    assert [r["status"] for r in summary.rows] == ["baseline", "discard"]  # type: ignore[attr-defined]


def test_the_task_agent_is_the_example_agent() -> None:
    assert (EXAMPLE / "agent.py").read_bytes() == (EXAMPLES / "agent" / "agent.py").read_bytes(), (
        "examples/agent-harness/agent.py drifted from examples/agent/agent.py: copy it over")
    target = load_target(EXAMPLE)
    assert target.editable == ("harness.py",) and "agent.py" in target.fixed and "evals.py" in target.fixed
    assert target.metric == "val.accuracy" and target.network
    assert target.sealed == ("holdout.jsonl",) and target.holdout is not None and "holdout.jsonl" not in target.fixed
    assert all('"split": "test"' in line for line in (EXAMPLE / "holdout.jsonl").read_text().splitlines())
    assert '"split": "test"' not in (EXAMPLE / "cases.jsonl").read_text()  # the test questions are sealed
    assert not any("sk-" in v for v in target.env.values())


def test_model_proxy_adds_the_key_for_plain_and_streamed_calls(server: MessagesServer) -> None:
    with ModelProxy("host-held-key", upstream=server.url) as proxy:
        client = anthropic.Anthropic(base_url=proxy.url, api_key="placeholder", max_retries=0)
        msg = client.messages.create(model=TASK_MODEL, max_tokens=50, messages=[{"role": "user", "content": "What is 17% of 2,350?"}])
        assert msg.stop_reason == "tool_use"
        with client.messages.stream(model=TASK_MODEL, max_tokens=50,
                                    messages=[{"role": "user", "content": "What is the square root of 1,764?"}]) as stream:
            final = stream.get_final_message()
        assert final.content[-1].type == "tool_use"
    assert [r.headers["x-api-key"] for r in server.message_requests()] == ["host-held-key", "host-held-key"]
    assert os.environ.get("ANTHROPIC_API_KEY") is None  # conftest keeps real keys out of the tests
