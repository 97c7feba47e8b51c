"""Workload and client processes for bench/ingest.py (importable, so `spawn` workers can run them).

The workload is the one from the tracing research (§6): traces of one AGENT root with LLM and
TOOL children (5 + 4 for 10 spans per trace), OpenInference and gen_ai.* attributes, token counts
and ~200-byte input/output strings. Ids come from a seeded generator, so the collector, Phoenix
and the bare-limit run see byte-identical spans (timestamps aside).
"""

from __future__ import annotations

import random
import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

TEXT = ("The agent considered the user's request, looked up three sources and wrote a short answer. " * 3)[:200]


class _SeededIds(IdGenerator):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


def make_spans(n_traces: int, per_trace: int, seed: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent"}), id_generator=_SeededIds(seed))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.ingest")
    for i in range(n_traces):
        root = {"openinference.span.kind": "AGENT", "input.value": f"{i}: {TEXT}", "output.value": TEXT, "session.id": f"s{i % 50}"}
        with tracer.start_as_current_span("agent", attributes=root):
            for j in range(per_trace - 1):
                if j % 2 == 0:
                    attrs = {
                        "openinference.span.kind": "LLM", "gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x",
                        "gen_ai.usage.input_tokens": 100 + j, "gen_ai.usage.output_tokens": 20 + j,
                        "llm.model_name": "claude-x", "input.value": TEXT, "output.value": TEXT,
                    }
                    with tracer.start_as_current_span("chat claude-x", attributes=attrs):
                        pass
                else:
                    attrs = {
                        "openinference.span.kind": "TOOL", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                        "tool.name": "search", "input.value": TEXT, "output.value": TEXT,
                    }
                    with tracer.start_as_current_span("execute_tool search", attributes=attrs):
                        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def client_spans(client: int, clients: int, n_traces: int, per_trace: int) -> list[ReadableSpan]:
    """This client's share of the workload (traces are split evenly, seeds fixed per client)."""
    share = n_traces // clients + (1 if client < n_traces % clients else 0)
    return make_spans(share, per_trace, seed=1000 + client)


def run_client(client: int, clients: int, n_traces: int, per_trace: int, batch: int, endpoint: str,
               pre_encoded: bool, barrier: Any, results: Any) -> None:
    """One exporter process: build spans, wait for the start, export them in `batch`-sized calls.

    pre_encoded=False: `OTLPSpanExporter.export(spans)` (protobuf encoding in the timed loop).
    pre_encoded=True: bodies serialised before the start, then sent by the exporter's own HTTP
    client (retries, Retry-After): the server-bound figure, comparable with the bare limit.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = client_spans(client, clients, n_traces, per_trace)
    batches = [spans[i : i + batch] for i in range(0, len(spans), batch)]
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=120)
    bodies = [encode_spans(b).SerializeToString() for b in batches] if pre_encoded else []
    barrier.wait()
    cpu0 = time.process_time()
    ok = failed = 0
    for i, b in enumerate(batches):
        if pre_encoded:
            success = exporter._client.export(bodies[i]).success  # the exporter's HTTP client, minus encoding
        else:
            success = exporter.export(b) is SpanExportResult.SUCCESS
        if success:
            ok += len(b)
        else:
            failed += len(b)
    results.put((client, ok, failed, time.time(), time.process_time() - cpu0))
    exporter.shutdown()
