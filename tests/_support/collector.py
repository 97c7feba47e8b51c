"""Helpers for the collector tests: real spans from the OTel SDK, OTLP bodies, a server on loopback."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from tracekit.collector import CollectorConfig
from tracekit.collector._server import CollectorThread
from tracekit.store._rows import RawSpan, span_row, spans_table

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class SeededIds(IdGenerator):
    """Deterministic, distinct ids (tests can name every span they sent)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


def make_spans(n_traces: int, per_trace: int = 5, *, seed: int = 0, service: str = "svc", resource: dict[str, Any] | None = None) -> list[ReadableSpan]:
    """`n_traces` traces of `per_trace` spans: an agent root with llm and tool children."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, **(resource or {})}), id_generator=SeededIds(seed))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.collector")
    for i in range(n_traces):
        with tracer.start_as_current_span("agent run", attributes={"openinference.span.kind": "AGENT", "input.value": f"question {i}", "n": i}):
            for j in range(per_trace - 1):
                if j % 2 == 0:
                    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m1", "gen_ai.usage.input_tokens": 10 + j}
                    with tracer.start_as_current_span("chat m1", attributes=attrs):
                        pass
                else:
                    with tracer.start_as_current_span("execute_tool search", attributes={"gen_ai.operation.name": "execute_tool"}) as s:
                        s.add_event("tool.result", {"ok": True})
    provider.shutdown()
    return list(exporter.get_finished_spans())


def span_table(start: int, n: int) -> object:
    """`n` root spans numbered from `start` (ids start+1...), as the Arrow table the ingestor takes."""
    rows = [span_row(RawSpan(trace_id=start + i + 1, span_id=start + i + 1, parent_span_id=None, name=f"s{start + i}",
                             start_ns=1_700_000_000_000_000_000 + i, end_ns=1_700_000_000_000_001_000 + i)) for i in range(n)]
    return spans_table(rows)


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def json_body(spans: Sequence[ReadableSpan]) -> bytes:
    """OTLP/JSON as the specification writes it: lowerCamelCase keys, hex ids, integer enums."""
    import json

    from google.protobuf import json_format

    data = json_format.MessageToDict(encode_spans(spans))
    _ids_to_hex(data)
    return json.dumps(data).encode()


def _ids_to_hex(obj: Any) -> None:
    import base64

    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                obj[k] = base64.b64decode(v).hex()
            else:
                _ids_to_hex(v)
    elif isinstance(obj, list):
        for v in obj:
            _ids_to_hex(v)


def span_ids(spans: Sequence[ReadableSpan]) -> set[str]:
    return {format(s.context.span_id, "016x") for s in spans}


def sql(url: str, query: str, token: str | None = None, **extra: Any) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(url + "/api/sql", json={"sql": query, **extra}, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["rows"]  # type: ignore[no-any-return]


def start_thread_server(home: Path, **overrides: Any) -> CollectorThread:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    config = CollectorConfig.from_env(env, home=home, port=0, **overrides)
    return CollectorThread(config).start()


class ServeProcess:
    """`python -m tracekit serve --port 0` in a subprocess; `.url` parsed from its first lines."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
        full_env.update(env or {})
        self.log = home.parent / f"serve-{home.name}-{time.monotonic_ns()}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracekit", "serve", "--home", str(home), "--port", "0", *args],
                stdout=out, stderr=subprocess.STDOUT, env=full_env, text=True,
            )
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            text = self.log.read_text()
            m = re.search(r"collector on (http://\S+) ", text)
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("tracekit serve did not start:\n" + text)
            else:
                time.sleep(0.05)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return]
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"tracekit serve exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise AssertionError("tracekit serve did not become healthy")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def iter_batches(spans: Sequence[ReadableSpan], size: int) -> Iterator[Sequence[ReadableSpan]]:
    for i in range(0, len(spans), size):
        yield spans[i : i + size]
