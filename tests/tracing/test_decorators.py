"""@trace, span() and log_metric() against a real store (Parquet files queried with DuckDB).

Every test takes the shipped plugin's `tracekit_store`, the way users test their own traced code.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import tracekit
from tracekit.testing import StoreFixture


def spans_by_name(store: StoreFixture) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in store.rows("SELECT * FROM spans")}


def test_sync_nesting_inputs_outputs(tracekit_store: StoreFixture) -> None:
    @tracekit.trace(kind="tool")
    def add(a: int, b: int = 2) -> int:
        return a + b

    @tracekit.trace(kind="agent", name="my-agent")
    def agent(question: str) -> int:
        return add(1, b=5) + add(2)

    assert agent("q") == 10
    s = spans_by_name(tracekit_store)
    root = s["my-agent"]
    assert root["parent_span_id"] is None and root["kind"] == "agent"
    assert json.loads(root["input"]) == {"question": "q"} and json.loads(root["output"]) == 10
    adds = tracekit_store.rows("SELECT * FROM spans WHERE name LIKE '%add' ORDER BY start_time")
    assert [json.loads(r["input"]) for r in adds] == [{"a": 1, "b": 5}, {"a": 2}]
    assert all(r["parent_span_id"] == root["span_id"] and r["trace_id"] == root["trace_id"] for r in adds)
    assert all(r["kind"] == "tool" and r["project"] == "test" for r in adds)
    assert root["duration_ms"] >= 0 and root["status"] == "ok"


def test_methods_drop_self(tracekit_store: StoreFixture) -> None:
    class Agent:
        @tracekit.trace
        def run(self, x: int) -> int:
            return x * 2

        @classmethod
        @tracekit.trace
        def make(cls, n: int) -> int:
            return n

    assert Agent().run(3) == 6 and Agent.make(4) == 4
    s = spans_by_name(tracekit_store)
    assert json.loads(s["test_methods_drop_self.<locals>.Agent.run"]["input"]) == {"x": 3}
    assert json.loads(s["test_methods_drop_self.<locals>.Agent.make"]["input"]) == {"n": 4}


def test_async_nesting_across_tasks(tracekit_store: StoreFixture) -> None:
    @tracekit.trace(kind="tool")
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.01 * (3 - i))
        return i

    @tracekit.trace(kind="agent")
    async def main() -> list[int]:
        return list(await asyncio.gather(*(fetch(i) for i in range(3))))

    assert asyncio.run(main()) == [0, 1, 2]
    r = tracekit_store.rows("SELECT name, span_id, parent_span_id, trace_id, output FROM spans")
    root = next(x for x in r if x["name"].endswith("main"))
    kids = [x for x in r if x["name"].endswith("fetch")]
    assert len(kids) == 3 and all(k["parent_span_id"] == root["span_id"] for k in kids)
    assert sorted(json.loads(k["output"]) for k in kids) == [0, 1, 2]


def test_thread_pool_nesting(tracekit_store: StoreFixture) -> None:
    @tracekit.trace
    def work(i: int) -> int:
        return i * i

    @tracekit.trace
    def fan_out() -> list[int]:
        with ThreadPoolExecutor(4) as pool:
            out = list(pool.map(work, range(5)))
        t = threading.Thread(target=work, args=(9,))
        t.start()
        t.join()
        return out

    fan_out()
    r = tracekit_store.rows("SELECT name, span_id, parent_span_id FROM spans")
    root = next(x for x in r if x["name"].endswith("fan_out"))
    kids = [x for x in r if x["name"].endswith("work")]
    assert len(kids) == 6
    assert all(k["parent_span_id"] == root["span_id"] for k in kids)


def test_generator_span_covers_iteration_and_context(tracekit_store: StoreFixture) -> None:
    seen_parent: list[str | None] = []

    @tracekit.trace
    def inner() -> None:
        seen_parent.append(tracekit.current_trace_id())

    @tracekit.trace
    def numbers(n: int):
        for i in range(n):
            inner()  # nested under the generator's span
            yield i

    @tracekit.trace
    def consumer() -> int:
        total = 0
        for v in numbers(3):
            total += v
            outside()  # runs between yields: must nest under consumer, not the generator
        return total

    @tracekit.trace
    def outside() -> None:
        pass

    assert consumer() == 3
    mine = tracekit_store.rows("SELECT * FROM spans WHERE name NOT LIKE '%inner' AND name NOT LIKE '%outside'")
    r = {x["name"].split(".")[-1]: x for x in mine}
    gen, cons = r["numbers"], r["consumer"]
    assert gen["parent_span_id"] == cons["span_id"]
    assert json.loads(gen["output"]) == [0, 1, 2]
    assert json.loads(gen["attributes"])["tracekit.yielded"] == 3
    parents = "SELECT parent_span_id FROM spans WHERE name LIKE "
    inner_parents = {x["parent_span_id"] for x in tracekit_store.rows(parents + "'%inner'")}
    outside_parents = {x["parent_span_id"] for x in tracekit_store.rows(parents + "'%outside'")}
    assert inner_parents == {gen["span_id"]} and outside_parents == {cons["span_id"]}


def test_generator_closed_early_and_error(tracekit_store: StoreFixture) -> None:
    @tracekit.trace
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    @tracekit.trace
    def failing():
        yield 1
        raise RuntimeError("gen broke")

    g = endless()
    assert [next(g), next(g)] == [0, 1]
    g.close()
    with pytest.raises(RuntimeError, match="gen broke"):
        list(failing())
    s = {k.split(".")[-1]: v for k, v in spans_by_name(tracekit_store).items()}
    assert json.loads(s["endless"]["attributes"])["tracekit.closed_early"] is True
    assert s["failing"]["status"] == "error" and "gen broke" in s["failing"]["status_message"]


def test_async_generator(tracekit_store: StoreFixture) -> None:
    @tracekit.trace(kind="llm")
    async def stream(n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"tok{i}"

    async def main() -> list[str]:
        return [t async for t in stream(3)]

    assert asyncio.run(main()) == ["tok0", "tok1", "tok2"]
    (s,) = tracekit_store.rows("SELECT * FROM spans")
    assert s["kind"] == "llm" and json.loads(s["output"]) == ["tok0", "tok1", "tok2"]


def test_exception_recorded_and_reraised_unchanged(tracekit_store: StoreFixture) -> None:
    class MyError(Exception):
        pass

    err = MyError("boom 42")

    @tracekit.trace
    def explode() -> None:
        raise err

    with pytest.raises(MyError) as info:
        explode()
    assert info.value is err
    (s,) = tracekit_store.rows("SELECT status, status_message, events FROM spans")
    assert s["status"] == "error" and s["status_message"] == "MyError: boom 42"
    (event,) = [e for e in s["events"] if e["name"] == "exception"]
    attrs = json.loads(event["attributes"])
    assert attrs["exception.type"].endswith("MyError") and "raise err" in attrs["exception.stacktrace"]


def test_async_exception(tracekit_store: StoreFixture) -> None:
    @tracekit.trace
    async def bad() -> None:
        raise ValueError("async bad")

    with pytest.raises(ValueError, match="async bad"):
        asyncio.run(bad())
    (s,) = tracekit_store.rows("SELECT status, status_message FROM spans")
    assert s == {"status": "error", "status_message": "ValueError: async bad"}


@dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def test_unjsonable_and_capped_and_scrubbed(tracekit_store: StoreFixture) -> None:
    tracekit.configure(home=tracekit_store.home, project="test", max_field_chars=2000)

    @tracekit.trace
    def f(p: Point, o: Opaque, blob: bytes, s: set[int], big: str, api_key: str) -> dict[str, Any]:
        return {"items": list(range(5000))}

    f(Point(1, 2), Opaque(), b"\x00\x01", {3, 1}, "x" * 10_000, "sk-secret")
    (s,) = tracekit_store.rows("SELECT input, output FROM spans")
    inp = json.loads(s["input"])
    assert inp["p"] == {"x": 1, "y": 2} and inp["o"] == "<Opaque thing>"
    assert inp["blob"] == "<bytes len=2>" and inp["s"] == [1, 3] and inp["api_key"] == "[REDACTED]"
    assert inp["big"].startswith("xxx") and "chars]" in inp["big"] and len(s["input"]) <= 2000
    out = json.loads(s["output"])  # still valid JSON, shortened with a marker
    assert len(s["output"]) <= 2000 and any("items]" in str(v) for v in out["items"][-1:])


def test_cyclic_and_nonfinite_values_are_still_json() -> None:
    from tracekit._util.jsonutil import dumps_capped

    loop: dict[str, Any] = {"name": "a", "kids": []}
    loop["kids"].append(loop)  # the fast encoder gives up on cycles; the full walk caps the depth
    text = dumps_capped(loop)
    assert json.loads(text)["name"] == "a" and "{...}" in text
    assert json.loads(dumps_capped({"loss": float("nan"), "best": float("-inf")})) == {"loss": "nan", "best": "-inf"}
    with ThreadPoolExecutor(4) as pool:  # one shared encoder, used from many threads
        texts = list(pool.map(lambda i: dumps_capped({"i": i, "xs": [i] * 50}), range(400)))
    assert [json.loads(t)["i"] for t in texts] == list(range(400))


def test_redaction_hook_and_capture_off(tracekit_store: StoreFixture) -> None:
    def redact(field: str, value: Any) -> Any:
        if field == "input":
            return {k: ("***" if k == "email" else v) for k, v in value.items()}
        return value

    tracekit.configure(home=tracekit_store.home, project="test", redact=redact)

    @tracekit.trace
    def signup(email: str, plan: str) -> str:
        return "ok"

    @tracekit.trace(capture_input=False, capture_output=False)
    def private(x: int) -> int:
        return x

    signup("a@b.c", "pro")
    private(1)
    s = spans_by_name(tracekit_store)
    assert json.loads(s["test_redaction_hook_and_capture_off.<locals>.signup"]["input"]) == {"email": "***", "plan": "pro"}
    p = s["test_redaction_hook_and_capture_off.<locals>.private"]
    assert p["input"] is None and p["output"] is None


def test_span_context_manager(tracekit_store: StoreFixture) -> None:
    with tracekit.span("retrieve", kind="chain", k=5, tags=["a", "b"]) as s:
        s.set_input({"query": "q"})
        s.set_attribute("hits", 3)
        s.set_output(["doc1"])
        inner_trace = tracekit.current_trace_id()
    with pytest.raises(KeyError):
        with tracekit.span("fails"):
            raise KeyError("k")
    r = spans_by_name(tracekit_store)
    ret = r["retrieve"]
    assert ret["kind"] == "chain" and ret["trace_id"] == inner_trace == s.trace_id
    attrs = json.loads(ret["attributes"])
    assert attrs["k"] == 5 and attrs["hits"] == 3 and attrs["tags"] == ["a", "b"]
    assert json.loads(ret["input"]) == {"query": "q"} and json.loads(ret["output"]) == ["doc1"]
    assert r["fails"]["status"] == "error"


def test_async_with_span(tracekit_store: StoreFixture) -> None:
    async def main() -> None:
        async with tracekit.span("outer", kind="agent"):
            async with tracekit.span("inner"):
                await asyncio.sleep(0)

    asyncio.run(main())
    s = spans_by_name(tracekit_store)
    assert s["inner"]["parent_span_id"] == s["outer"]["span_id"]


def test_log_metric_lands_in_metrics_view(tracekit_store: StoreFixture) -> None:
    with tracekit.span("train", kind="run"):
        for step in range(5):
            tracekit.log_metric("loss", 1.0 / (step + 1), step=step)
        tracekit.log_metric("loss", float("nan"), step=5)
    tracekit.log_metric("reward", 0.5)  # outside any span: gets a span of its own
    m = tracekit_store.rows("SELECT name, value, step, span_name FROM metrics ORDER BY name, step")
    loss = [x for x in m if x["name"] == "loss"]
    assert [x["step"] for x in loss] == [0, 1, 2, 3, 4, 5]
    assert loss[1]["value"] == 0.5 and loss[5]["value"] is None and loss[0]["span_name"] == "train"
    assert [x for x in m if x["name"] == "reward"][0]["span_name"] == "metric"
    with pytest.raises(ValueError, match="must be a number"):
        tracekit.log_metric("loss", "high")  # type: ignore[arg-type]


def test_bad_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="kind='robot' is not one of"):
        tracekit.trace(kind="robot")


def test_experiment_tagging(tracekit_store: StoreFixture) -> None:
    with tracekit.experiment("exp-42"):
        with tracekit.span("in-exp"):
            pass
    with tracekit.span("no-exp"):
        pass
    s = spans_by_name(tracekit_store)
    assert s["in-exp"]["experiment_id"] == "exp-42" and s["no-exp"]["experiment_id"] is None


def test_reconfiguring_while_threads_end_spans_loses_none(tracekit_store: StoreFixture) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporters = [InMemorySpanExporter()]
    tracekit.configure(home=tracekit_store.home, project="test", exporter=exporters[0])

    def work() -> None:
        for _ in range(4000):
            with tracekit.span("s"):
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # each configure() swaps the pipeline under the writers
        exporters.append(InMemorySpanExporter())
        tracekit.configure(home=tracekit_store.home, project="test", exporter=exporters[-1])
    for t in threads:
        t.join()
    tracekit.flush()
    assert len(exporters) > 2 and sum(len(e.get_finished_spans()) for e in exporters) == 16_000
