"""The Anthropic proposer with the real SDK against the local Messages API server (tests/messages_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracekit

from tests._support.messages_server import MessagesServer, error, reply, text, thinking
from tests._support.optimizer import make_target, optimize

CRASH = ('RATIONALE: mode z might regularize better.\n\ntrain.py\n<<<<<<< SEARCH\nMODE = "a"  # one of "a", "b" or "c"\n'
         '=======\nMODE = "z"  # one of "a", "b" or "c"\n>>>>>>> REPLACE\n')
WIDEN = ("RATIONALE: the width is far from its optimum; widen.\n\ntrain.py\n<<<<<<< SEARCH\nWIDTH = 8  # model width\n"
         "=======\nWIDTH = 32  # model width\n>>>>>>> REPLACE\n")
STACK = "Traceback (most recent call last)"


def _options(server: MessagesServer, **extra: object) -> dict[str, object]:
    return {"api_key": "test-key", "base_url": server.url, "model": "claude-sonnet-5-5", "max_retries": 3, **extra}


@pytest.mark.parametrize("feedback", ["traces", "scores"])
def test_prompt_holds_the_previous_runs_stack_trace_and_curve_only_with_traces(
        messages_server: MessagesServer, tmp_path: Path, feedback: str) -> None:
    root = make_target(tmp_path / "bowl")
    messages_server.enqueue(
        reply(thinking("The mode penalty is 0.5..."), text(CRASH),
              usage={"input_tokens": 1200, "output_tokens": 80, "cache_creation_input_tokens": 900}),
        reply(text(WIDEN), usage={"input_tokens": 1500, "output_tokens": 60, "cache_read_input_tokens": 900}),
    )
    s = optimize(root, proposer="anthropic", proposer_options=_options(messages_server), iterations=2, feedback=feedback)
    assert [r["status"] for r in s.rows] == ["baseline", "crash", "keep"]
    first, second = messages_server.message_requests()
    assert first.api_key == "test-key" and first.body["model"] == "claude-sonnet-5-5"
    assert first.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first.body["system"] == second.body["system"]  # the stable prefix is byte-identical: it caches
    assert 'WIDTH = 8  # model width' in second.text and "main-0001" in second.text  # current file and history
    if feedback == "traces":
        assert STACK in second.text and "KeyError: 'z'" in second.text and 'PENALTY[mode]' in second.text
        assert "`train_loss` (5 points, step: value): 1: 3.1, 2: 1.6" in second.text  # the metric curve
        assert "`train_loss` (5 points" in first.text  # the baseline's curve in the first prompt
        assert "## Slowest spans" in second.text and "compute_loss" in second.text
    else:
        assert STACK not in second.text and "KeyError" not in second.text and "train_loss` (" not in second.text
        assert "## Errors" not in second.text and "## Metric curves" not in second.text
        assert "| main-0001 | crash |" in second.text  # scores only: the status stays, the reasons go
    crash = s.rows[1]
    prompt, raw = tracekit.query("SELECT prompt, raw_output FROM experiments WHERE seq = 1", home=s.home).fetchall()[0]
    assert prompt == first.body["system"][0]["text"] + "\n\n" + first.body["messages"][0]["content"]  # stored as sent
    assert raw == CRASH and crash["description"] == "mode z might regularize better."
    assert (crash["tokens_in"], crash["tokens_out"], crash["cache_write_tokens"], crash["model"]) == (1200, 80, 900, "claude-sonnet-5-5")
    assert crash["cost_usd"] == pytest.approx((1200 * 2.0 + 80 * 10.0 + 900 * 2.5) / 1e6)
    assert s.rows[2]["cache_read_tokens"] == 900 and s.rows[2]["feedback"] == feedback
    # the Claude call is an llm span inside the experiment's trace, under optimizer.propose
    spans = tracekit.query(
        "SELECT s.name, p.name FROM spans s JOIN spans p ON s.parent_span_id = p.span_id AND s.trace_id = p.trace_id "
        f"WHERE s.trace_id = '{crash['trace_id']}' AND s.kind = 'llm'", home=s.home).fetchall()
    assert ("chat claude-sonnet-5-5", "optimizer.propose") in spans


def test_retries_with_backoff_then_succeeds(messages_server: MessagesServer, tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    messages_server.enqueue(error(529, retry_after=0.01), error(429, retry_after=0.01), reply(text(WIDEN)))
    s = optimize(root, proposer="anthropic", proposer_options=_options(messages_server), iterations=1)
    assert [r["status"] for r in s.rows] == ["baseline", "keep"] and len(messages_server.message_requests()) == 3


def test_unusable_reply_is_invalid_and_gets_one_repair_with_the_error(messages_server: MessagesServer, tmp_path: Path) -> None:
    root = make_target(tmp_path / "bowl")
    messages_server.enqueue(
        reply(text("RATIONALE: lower the learning rate.\n\ntrain.py\n<<<<<<< SEARCH\nLR = 0.5\n=======\nLR = 0.05\n>>>>>>> REPLACE\n")),
        reply(text(WIDEN)),
        reply(text("I would rather not change anything.")),  # no edit at all: invalid ...
        reply(text("RATIONALE: back.\ntrain.py\n<<<<<<< SEARCH\nWIDTH = 32  # model width\n=======\n"
                   "WIDTH = 8  # model width\n>>>>>>> REPLACE\n")),  # ... its repair is the baseline again: invalid too
    )
    s = optimize(root, proposer="anthropic", proposer_options=_options(messages_server), iterations=4)
    assert [(r["status"], r["repair_of"]) for r in s.rows] == [
        ("baseline", None), ("invalid", None), ("keep", "main-0001"), ("invalid", None), ("invalid", "main-0003")]
    reqs = messages_server.message_requests()
    assert "## Repair needed" not in reqs[0].text
    assert "## Repair needed" in reqs[1].text and "SEARCH text was not found in train.py" in reqs[1].text
    assert "LR = 0.05" in reqs[1].text  # the rejected reply is shown back
    assert "identical to experiment main-0000" in s.rows[4]["error"]
    raw = tracekit.query("SELECT raw_output FROM experiments WHERE seq = 1", home=s.home).fetchall()[0][0]
    assert raw.startswith("RATIONALE: lower") and s.rows[1]["tokens_out"] > 0


def test_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracekit import OptimizerError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    root = make_target(tmp_path / "bowl")
    with pytest.raises(OptimizerError, match="needs ANTHROPIC_API_KEY"):
        optimize(root, proposer="anthropic", iterations=1)
