"""A real HTTP server on 127.0.0.1 that speaks the Anthropic Messages API, for tests.

The real `anthropic` SDK talks to it through `base_url`; tests script what it answers and read what
it was sent. Non-streaming JSON and SSE streaming (chosen by the request's `"stream": true`), text,
thinking, redacted thinking and tool_use blocks (streamed as text / thinking / signature /
input_json deltas), usage with cache tokens, and API errors in the API's error JSON shape.

    import anthropic
    from tests._support.messages_server import MessagesServer, error, reply, text, thinking, tool_use

    with MessagesServer() as server:
        server.enqueue(
            reply(thinking("Add them."), tool_use("calculator", {"expression": "2+2"}), stop_reason="tool_use"),
            reply(text("It is 4."), usage={"input_tokens": 50, "output_tokens": 5, "cache_read_input_tokens": 40}),
            error(429, retry_after=0.01),          # the SDK retries it (max_retries >= 1)
        )
        client = anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)
        msg = client.messages.create(model="claude-test", max_tokens=100,
                                     messages=[{"role": "user", "content": "2+2?"}])
        with client.messages.stream(model="claude-test", max_tokens=100, messages=[...]) as s:
            print(s.get_final_text())
        assert "2+2?" in server.requests[0].text            # every request is recorded
        assert server.requests[0].api_key == "test-key"

In pytest, take the `messages_server` fixture (tests/conftest.py: a started server, stopped after the test):

    from tests._support.messages_server import reply, text

    def test_x(messages_server):
        messages_server.responder = lambda body: reply(text("hi " + body["model"]))

What it answers, in order: the next queued response (`enqueue`), else `responder(request_json)`, else
an echo of the last user text ("echo: ..."). A response is a `Reply` (see `reply()`), an `Error`
(see `error()`), a plain `str` (one text block) or a `dict` (a full Message JSON, sent as is).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
Responder = Callable[[dict[str, Any]], Any]

DEFAULT_MODEL = "claude-test-1"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):024d}"


# ---- content blocks -------------------------------------------------------------------------------


def text(value: str, citations: list[dict[str, Any]] | None = None) -> Block:
    """A text block."""
    block: Block = {"type": "text", "text": value}
    if citations is not None:
        block["citations"] = citations
    return block


def thinking(value: str, signature: str = "sig-test") -> Block:
    """A thinking block (streamed as thinking_delta chunks then one signature_delta)."""
    return {"type": "thinking", "thinking": value, "signature": signature}


def redacted_thinking(data: str = "opaque") -> Block:
    return {"type": "redacted_thinking", "data": data}


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> Block:
    """A tool_use block (streamed as input_json_delta chunks of the JSON of `input`)."""
    return {"type": "tool_use", "id": id or _next_id("toolu"), "name": name, "input": input}


# ---- responses ------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A successful Message. `usage` keys: input_tokens, output_tokens, cache_creation_input_tokens,
    cache_read_input_tokens (missing ones are estimated / zero). Streaming knobs: `delay_s` before the
    response starts, `chunk_delay_s` between SSE events, `chunk_chars` per delta, and
    `error_after_events` / `stream_error` to send an SSE `error` event part-way."""

    content: list[Block]
    stop_reason: str | None = "end_turn"
    stop_sequence: str | None = None
    model: str | None = None
    id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chunk_chars: int = 8
    error_after_events: int | None = None
    stream_error: tuple[str, str] = ("overloaded_error", "Overloaded")


@dataclass
class Error:
    """An API error: HTTP `status` with body {"type": "error", "error": {"type", "message"}}."""

    status: int
    type: str
    message: str
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def reply(*content: Block | str, stop_reason: str | None = None, **kwargs: Any) -> Reply:
    """A Message with these blocks (a str is a text block); stop_reason defaults to "tool_use" when
    a tool_use block is present, else "end_turn"."""
    blocks = [text(c) if isinstance(c, str) else c for c in content]
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return Reply(content=blocks, stop_reason=stop_reason, **kwargs)


def error(status: int, type: str | None = None, message: str | None = None, *,
          retry_after: float | None = None, headers: dict[str, str] | None = None) -> Error:
    """An error response; `type` defaults from the status (429 rate_limit_error, 529 overloaded_error, ...).
    `retry_after` (seconds) sets `retry-after` and `retry-after-ms`, which the SDK honours when retrying."""
    etype = type or _ERROR_TYPES.get(status, "api_error")
    return Error(status, etype, message or etype.replace("_", " "), retry_after, dict(headers or {}))


@dataclass
class RecordedRequest:
    """One request the server received: headers lower-cased, `body` the parsed JSON (or None)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes
    time: float

    @property
    def api_key(self) -> str | None:
        """The key the client sent (`x-api-key`, or `authorization: Bearer ...` in newer SDKs)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    @property
    def text(self) -> str:
        """All text of the prompt (system, messages, tool results, tool descriptions) joined by newlines."""
        body = self.body or {}
        parts: list[str] = []
        _collect_text(body.get("system"), parts)
        for m in body.get("messages") or []:
            _collect_text(m.get("content"), parts)
        for t in body.get("tools") or []:
            parts.extend(str(t.get(k)) for k in ("name", "description") if t.get(k))
        return "\n".join(parts)


def _collect_text(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                for key in ("text", "thinking"):
                    if isinstance(block.get(key), str):
                        out.append(block[key])
                if block.get("type") == "tool_use":
                    out.append(json.dumps(block.get("input")))
                _collect_text(block.get("content"), out)


# ---- rendering ------------------------------------------------------------------------------------


def _estimate_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // 4)


def _usage(r: Reply, body: dict[str, Any]) -> dict[str, Any]:
    u = {
        "input_tokens": r.usage.get("input_tokens", _estimate_tokens(body.get("messages", []))),
        "output_tokens": r.usage.get("output_tokens", _estimate_tokens(r.content)),
        "cache_creation_input_tokens": r.usage.get("cache_creation_input_tokens", 0),
        "cache_read_input_tokens": r.usage.get("cache_read_input_tokens", 0),
    }
    u.update({k: v for k, v in r.usage.items() if k not in u})
    return u


def _message(r: Reply, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r.id or _next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": r.model or body.get("model") or DEFAULT_MODEL,
        "content": r.content,
        "stop_reason": r.stop_reason,
        "stop_sequence": r.stop_sequence,
        "usage": _usage(r, body),
    }


def _chunks(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def sse_events(r: Reply, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of the SSE stream for a Reply, in the API's order."""
    msg = _message(r, body)
    usage = msg["usage"]
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    for i, block in enumerate(r.content):
        kind = block["type"]
        if kind == "text":
            yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}
            if i == 0:
                yield "ping", {"type": "ping"}
            for piece in _chunks(block["text"], r.chunk_chars):
                yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}
        elif kind == "thinking":
            yield "content_block_start", {"type": "content_block_start", "index": i,
                                          "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
            for piece in _chunks(block["thinking"], r.chunk_chars):
                yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": piece}}
            yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                          "delta": {"type": "signature_delta", "signature": block.get("signature", "")}}
        elif kind == "tool_use":
            yield "content_block_start", {"type": "content_block_start", "index": i,
                                          "content_block": {**block, "input": {}}}
            for piece in _chunks(json.dumps(block["input"]), r.chunk_chars):
                yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                              "delta": {"type": "input_json_delta", "partial_json": piece}}
        else:  # redacted_thinking and any other block: sent whole in content_block_start
            yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": block}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]},
                            "usage": {"output_tokens": usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


# ---- the server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._record(b"")
        self._send_error(error(404, message=f"GET {self.path} is not served by the test server"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(raw, body)
        path = self.path.split("?", 1)[0]
        if not isinstance(body, dict):
            self._send_error(error(400, message="request body must be a JSON object"))
            return
        if path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": _estimate_tokens(body.get("messages", []))}, {})
            return
        if path != "/v1/messages":
            self._send_error(error(404, message=f"POST {path} is not served by the test server"))
            return
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                self._send_error(error(400, message=f"{key}: Field required"))
                return
        try:
            resp = self.server.owner._next_response(body)
        except Exception as exc:  # a failing responder is a test bug: make it loud
            self._send_error(error(500, "api_error", f"test responder failed: {type(exc).__name__}: {exc}"))
            return
        if isinstance(resp, Error):
            time.sleep(resp.delay_s)
            self._send_error(resp)
        elif isinstance(resp, dict):
            self._send_json(200, resp, {})
        else:
            r = reply(resp) if isinstance(resp, str) else resp
            time.sleep(r.delay_s)
            if body.get("stream"):
                self._send_stream(r, body)
            else:
                self._send_json(200, _message(r, body), r.headers)

    def _record(self, raw: bytes, body: Any = None) -> None:
        rec = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              body if isinstance(body, dict) else None, raw, time.time())
        with self.server.owner._lock:
            self.server.owner.requests.append(rec)

    def _headers(self, status: int, ctype: str, extra: dict[str, str], length: int | None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("request-id", _next_id("req"))
        if length is None:
            self.send_header("transfer-encoding", "chunked")
            self.send_header("cache-control", "no-cache")
        else:
            self.send_header("content-length", str(length))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def _send_json(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self._headers(status, "application/json", extra, len(data))
        self.wfile.write(data)

    def _send_error(self, e: Error) -> None:
        extra = dict(e.headers)
        if e.retry_after is not None:
            extra.setdefault("retry-after", str(max(0, round(e.retry_after))))
            extra.setdefault("retry-after-ms", str(int(e.retry_after * 1000)))
        self._send_json(e.status, {"type": "error", "error": {"type": e.type, "message": e.message},
                                   "request_id": _next_id("req")}, extra)

    def _chunk(self, event: str, data: dict[str, Any]) -> None:
        payload = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _send_stream(self, r: Reply, body: dict[str, Any]) -> None:
        self._headers(200, "text/event-stream; charset=utf-8", r.headers, None)
        try:
            for n, (event, data) in enumerate(sse_events(r, body)):
                if r.error_after_events is not None and n >= r.error_after_events:
                    etype, message = r.stream_error
                    self._chunk("error", {"type": "error", "error": {"type": etype, "message": message}})
                    break
                if n and r.chunk_delay_s:
                    time.sleep(r.chunk_delay_s)
                self._chunk(event, data)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client abandoned the stream
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: "MessagesServer"


class MessagesServer:
    """The scriptable Messages API server; `url` is the SDK's `base_url`. Start/stop or use `with`."""

    def __init__(self, responder: Responder | None = None, *, host: str = "127.0.0.1") -> None:
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._host = host
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("MessagesServer is not started; call start() or use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "MessagesServer":
        self._httpd = _HTTPServer((self._host, 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="messages-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "MessagesServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *responses: Any) -> None:
        """Queue responses, answered in order before `responder` is asked."""
        with self._lock:
            self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """How many queued responses have not been sent yet."""
        with self._lock:
            return len(self._queue)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self.requests:
                raise AssertionError("the messages server has received no request")
            return self.requests[-1]

    def message_requests(self) -> list[RecordedRequest]:
        """The POST /v1/messages requests received, in order."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/messages")
                    and not r.path.startswith("/v1/messages/count_tokens")]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def _next_response(self, body: dict[str, Any]) -> Any:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return reply(text("echo: " + _last_user_text(body)))


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            parts: list[str] = []
            _collect_text(m.get("content"), parts)
            return " ".join(parts)
    return ""
