"""Streams of the Anthropic SDK, observed without changing them.

`create(stream=True)` returns a `Stream` / `AsyncStream` of raw SSE events; `messages.stream()` returns
a `MessageStreamManager` whose `__enter__` gives a `MessageStream`. Each is wrapped in a
`wrapt.ObjectProxy` (so `isinstance` checks, attributes and methods still work) that watches the
events as the caller consumes them, accumulates the message, and ends the LLM span when the stream
completes, fails, is closed early, or is garbage-collected unfinished ("abandoned").
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import wrapt

from ..._util.jsonutil import loads_limited, to_jsonable
from ._content import _get

if TYPE_CHECKING:
    from ._call import Call

    _Proxy = wrapt.ObjectProxy[Any]  # the SDK's stream objects, not imported here (anthropic is optional)
else:
    _Proxy = wrapt.ObjectProxy  # generic only in wrapt 2

log = logging.getLogger("tracekit")


class Accumulator:
    """Builds the final message (as a dict) from raw stream events, SDK objects or dicts."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"role": "assistant", "content": []}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json_bufs: dict[int, str] = {}
        self.usage: dict[str, Any] = {}

    def feed(self, event: Any) -> bool:
        """Take one event; True when it carries generated content (a token)."""
        kind = _get(event, "type")
        if kind == "message_start":
            msg = _get(event, "message")
            for key in ("id", "model", "role", "stop_reason", "stop_sequence"):
                value = _get(msg, key)
                if value is not None:
                    self.message[key] = value
            self._usage(_get(msg, "usage"))
        elif kind == "content_block_start":
            block = to_jsonable(_get(event, "content_block"), scrub=False)
            self.blocks[int(_get(event, "index", len(self.blocks)))] = block if isinstance(block, dict) else {}
        elif kind == "content_block_delta":
            index = int(_get(event, "index", 0))
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            delta = _get(event, "delta")
            dtype = _get(delta, "type")
            if dtype == "text_delta":
                block["text"] = (block.get("text") or "") + (_get(delta, "text") or "")
                return True
            if dtype == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (_get(delta, "thinking") or "")
                return True
            if dtype == "input_json_delta":
                self.json_bufs[index] = self.json_bufs.get(index, "") + (_get(delta, "partial_json") or "")
                return True
        elif kind == "message_delta":
            delta = _get(event, "delta")
            for key in ("stop_reason", "stop_sequence"):
                value = _get(delta, key)
                if value is not None:
                    self.message[key] = value
            self._usage(_get(event, "usage"))
        return False

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = _get(usage, key)
            if isinstance(value, int):
                self.usage[key] = value

    def result(self) -> dict[str, Any]:
        content = []
        for index in sorted(self.blocks):
            block = dict(self.blocks[index])
            if index in self.json_bufs:
                buf = self.json_bufs[index]
                try:
                    block["input"] = loads_limited(buf) if buf else {}
                except ValueError:  # cut off mid-stream: keep what arrived
                    block["input"] = {"_partial_json": buf}
            content.append(block)
        return {**self.message, "content": content, "usage": dict(self.usage)}


class StreamRecord:
    """The span's side of one stream: timing, accumulation, and exactly-once finishing."""

    __slots__ = ("call", "acc", "events", "done", "__weakref__")

    def __init__(self, call: "Call") -> None:
        self.call = call
        self.acc = Accumulator()
        self.events = 0
        self.done = False

    def feed(self, event: Any) -> None:
        if self.done:
            return
        now = time.perf_counter()
        if self.events == 0:
            self.call.first_chunk_at = now
        self.events += 1
        try:
            if self.acc.feed(event) and self.call.first_token_at is None:
                self.call.first_token_at = now
        except Exception:  # an event of a shape we do not know: the caller's stream goes on
            log.debug("tracekit: unexpected stream event %r", event, exc_info=True)

    def finish(self, outcome: str, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        try:
            msg = self.acc.result() if self.events else None
            if exc is not None:
                self.call.fail(exc, partial=msg, outcome=outcome)
            else:
                self.call.finish(msg, outcome=outcome)
        except Exception:
            log.warning("tracekit: could not record an Anthropic stream", exc_info=True)


def _watch(proxy: Any, rec: StreamRecord) -> None:
    weakref.finalize(proxy, rec.finish, "abandoned")


class TracedStream(_Proxy):
    """`Stream[RawMessageStreamEvent]` from `create(stream=True)`."""

    def __init__(self, wrapped: Any, call: "Call") -> None:
        super().__init__(wrapped)
        self._self_rec = StreamRecord(call)
        self._self_it: Iterator[Any] | None = None
        _watch(self, self._self_rec)

    def __iter__(self) -> "TracedStream":
        return self

    def __next__(self) -> Any:
        rec = self._self_rec
        if self._self_it is None:
            self._self_it = iter(self.__wrapped__)
        try:
            event = next(self._self_it)
        except StopIteration:
            rec.finish("completed")
            raise
        except BaseException as exc:
            rec.finish("error", exc)
            raise
        rec.feed(event)
        return event

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_rec.finish("closed")

    def __enter__(self) -> "TracedStream":
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc)
        finally:
            self._self_rec.finish("closed")


class TracedAsyncStream(_Proxy):
    """`AsyncStream[RawMessageStreamEvent]` from `await create(stream=True)`."""

    def __init__(self, wrapped: Any, call: "Call") -> None:
        super().__init__(wrapped)
        self._self_rec = StreamRecord(call)
        self._self_it: AsyncIterator[Any] | None = None
        _watch(self, self._self_rec)

    def __aiter__(self) -> "TracedAsyncStream":
        return self

    async def __anext__(self) -> Any:
        rec = self._self_rec
        if self._self_it is None:
            self._self_it = self.__wrapped__.__aiter__()
        try:
            event = await self._self_it.__anext__()
        except StopAsyncIteration:
            rec.finish("completed")
            raise
        except BaseException as exc:
            rec.finish("error", exc)
            raise
        rec.feed(event)
        return event

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_rec.finish("closed")

    async def __aenter__(self) -> "TracedAsyncStream":
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc)
        finally:
            self._self_rec.finish("closed")


class TracedMessageStream(TracedStream):
    """`MessageStream` (from `with messages.stream(...) as s`): adds the helper methods."""

    def __init__(self, wrapped: Any, call: "Call") -> None:
        super().__init__(wrapped, call)
        self._self_text: Iterator[str] | None = None

    @property
    def text_stream(self) -> Iterator[str]:
        if self._self_text is None:
            self._self_text = (e.delta.text for e in self
                               if e.type == "content_block_delta" and e.delta.type == "text_delta")
        return self._self_text

    def until_done(self) -> None:
        for _ in self:
            pass

    def get_final_message(self) -> Any:
        self.until_done()
        return self.__wrapped__.get_final_message()

    def get_final_text(self) -> str:
        self.until_done()
        text: str = self.__wrapped__.get_final_text()
        return text


class TracedAsyncMessageStream(TracedAsyncStream):
    """`AsyncMessageStream` (from `async with messages.stream(...) as s`)."""

    def __init__(self, wrapped: Any, call: "Call") -> None:
        super().__init__(wrapped, call)
        self._self_text: AsyncIterator[str] | None = None

    @property
    def text_stream(self) -> AsyncIterator[str]:
        if self._self_text is None:
            self._self_text = self._texts()
        return self._self_text

    async def _texts(self) -> AsyncIterator[str]:
        async for e in self:
            if e.type == "content_block_delta" and e.delta.type == "text_delta":
                yield e.delta.text

    async def until_done(self) -> None:
        async for _ in self:
            pass

    async def get_final_message(self) -> Any:
        await self.until_done()
        return await self.__wrapped__.get_final_message()

    async def get_final_text(self) -> str:
        await self.until_done()
        text: str = await self.__wrapped__.get_final_text()
        return text


class TracedStreamManager(_Proxy):
    """`MessageStreamManager`: the request (and the span) starts at `__enter__`."""

    def __init__(self, wrapped: Any, start: Callable[[], "Call | None"]) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_stream: TracedMessageStream | None = None

    def __enter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return self.__wrapped__.__enter__()
        with call.running():
            inner = self.__wrapped__.__enter__()
        self._self_stream = TracedMessageStream(inner, call)
        return self._self_stream

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc)
        finally:
            if self._self_stream is not None:
                self._self_stream._self_rec.finish("closed")


class TracedAsyncStreamManager(_Proxy):
    """`AsyncMessageStreamManager` (`async with`)."""

    def __init__(self, wrapped: Any, start: Callable[[], "Call | None"]) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_stream: TracedAsyncMessageStream | None = None

    async def __aenter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return await self.__wrapped__.__aenter__()
        with call.running():
            inner = await self.__wrapped__.__aenter__()
        self._self_stream = TracedAsyncMessageStream(inner, call)
        return self._self_stream

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc)
        finally:
            if self._self_stream is not None:
                self._self_stream._self_rec.finish("closed")
