"""Traces from inside a run reach the store (tracekit or any OTel SDK), tagged and parented; the run is a span."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tracekit
from tracekit import Store
from tracekit.sandbox import run

from tests._support.sandbox import marker, py, spec


def spans_of(home: Path, trace_id: str) -> list[dict[str, Any]]:
    return [r for r in Store(home).read("spans").to_pylist() if r["trace_id"] == trace_id]


TRACEKIT_CANDIDATE = """
    import tracekit

    @tracekit.trace(kind="tool")
    def step(i):
        return i * 2

    with tracekit.span("train", kind="chain"):
        step(1)
        step(2)
        tracekit.log_metric("loss", 1.5, step=1)
    print("METRIC score=1")
"""


@pytest.mark.parametrize("otlp", [True, False], ids=["via-otlp-receiver", "via-parquet-spool"])
def test_tracekit_spans_from_inside_land_in_the_store(tmp_path: Path, home: Path, otlp: bool) -> None:
    res = run(spec(tmp_path, py(TRACEKIT_CANDIDATE, marker()), trace_home=home, otlp=otlp, experiment_id="exp-7",
                   name="candidate-run"))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert res.spans_ingested == 3  # train + two steps (the run span is written by the harness)
    spans = spans_of(home, res.trace_id)  # type: ignore[arg-type]
    by_name = {s["name"]: s for s in spans}
    assert sorted(by_name) == ["candidate-run", "step", "train"]
    run_span = by_name["candidate-run"]
    assert run_span["kind"] == "run" and run_span["span_id"] == res.span_id
    assert by_name["train"]["parent_span_id"] == res.span_id
    assert {s["experiment_id"] for s in spans} == {"exp-7"}
    assert [s["kind"] for s in spans if s["name"] == "step"] == ["tool", "tool"]
    assert any(e["name"] == "tracekit.metric" for e in by_name["train"]["events"])
    # the spool is what was used, not the candidate's idea of where to write
    assert list((res.run_dir / "io" / "otlp").iterdir()) if otlp else list((res.run_dir / "io" / "spool" / "spans").iterdir())


def test_plain_opentelemetry_sdk_reaches_the_store(tmp_path: Path, home: Path) -> None:
    code = """
        import os
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        provider = TracerProvider(resource=Resource.create({"service.name": "plain-otel"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))   # endpoint from the environment
        ctx = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
        tracer = provider.get_tracer("candidate")
        with tracer.start_as_current_span("chat claude", context=ctx, attributes={"gen_ai.operation.name": "chat"}):
            with tracer.start_as_current_span("tool call", attributes={"gen_ai.operation.name": "execute_tool"}):
                pass
        provider.shutdown()
        print("METRIC ok=1")
    """
    res = run(spec(tmp_path, py(code, marker()), trace_home=home, experiment_id="exp-otel"))
    assert res.status == "ok", (res.error, res.stderr.text())
    spans = {s["name"]: s for s in spans_of(home, res.trace_id)}  # type: ignore[arg-type]
    assert spans["chat claude"]["kind"] == "llm" and spans["tool call"]["kind"] == "tool"
    assert spans["chat claude"]["parent_span_id"] == res.span_id
    assert spans["chat claude"]["service_name"] == "plain-otel"
    assert spans["chat claude"]["experiment_id"] == "exp-otel"


def test_run_span_carries_the_result_and_honours_traceparent(tmp_path: Path, home: Path) -> None:
    parent_trace, parent_span = "ab" * 16, "cd" * 8
    other_home = tmp_path / "other-store"  # not the configured home: the run span goes there too
    res = run(spec(tmp_path, py("import sys\nprint('METRIC val_bpb=1.25')\nsys.exit(2)", marker()), metric="val_bpb",
                   trace_home=other_home, traceparent=f"00-{parent_trace}-{parent_span}-01"))
    assert res.status == "crash" and res.trace_id == parent_trace
    spans = spans_of(other_home, parent_trace)
    assert len(spans) == 1
    s = spans[0]
    assert s["kind"] == "run" and s["parent_span_id"] == parent_span and s["status"] == "error"
    attrs = json.loads(s["attributes"])
    assert attrs["tracekit.run.status"] == "crash" and attrs["tracekit.run.exit_code"] == 2
    assert attrs["tracekit.run.metric_value"] == 1.25 and attrs["tracekit.run.wall_s"] > 0
    assert json.loads(s["output"])["status"] == "crash"
    assert [e["name"] for e in s["events"]] == ["tracekit.metric"]
    assert s["experiment_id"] == res.experiment_id == res.run_id


def test_run_inside_a_span_is_its_child(tmp_path: Path, home: Path) -> None:
    with tracekit.span("optimizer.step", kind="chain") as outer:
        res = run(spec(tmp_path, py("print('METRIC a=1')", marker()), trace_home=home))
    assert res.trace_id == outer.trace_id
    tracekit.flush()
    run_span = [s for s in spans_of(home, outer.trace_id) if s["kind"] == "run"][0]
    assert run_span["parent_span_id"] == outer.span_id


def test_forged_spool_files_are_rejected_not_trusted(tmp_path: Path, home: Path) -> None:
    code = """
        import os
        spool = os.environ['TRACEKIT_HOME']
        os.makedirs(f'{spool}/spans', exist_ok=True)
        open(f'{spool}/spans/junk.parquet', 'wb').write(b'PAR1 not really parquet PAR1')
        os.symlink('/etc/passwd', f'{spool}/spans/link.parquet')
        otlp = os.path.join(os.path.dirname(spool), 'otlp')
        open(f'{otlp}/000999.pb', 'wb').write(b'\\xff\\xff\\xff garbage')
        print('METRIC ok=1')
    """
    before = Store(home).row_count("spans")
    res = run(spec(tmp_path, py(code, marker()), trace_home=home))
    assert res.status == "ok"
    assert res.spans_ingested == 0
    problems = " | ".join(res.notes)
    assert "junk.parquet" in problems and "link.parquet" in problems and "000999.pb" in problems
    tracekit.flush()
    assert Store(home).row_count("spans") == before + 1  # only the run span
