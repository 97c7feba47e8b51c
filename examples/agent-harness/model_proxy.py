"""A loopback proxy to the Anthropic API that adds the API key, so sandboxed agents never hold it.

    export ANTHROPIC_API_KEY=...
    python examples/agent-harness/model_proxy.py --port 8788 &     # then: tracekit optimize examples/agent-harness

The task agent runs inside the sandbox with ANTHROPIC_BASE_URL=http://127.0.0.1:8788 and a
placeholder key; this process (outside the sandbox) forwards POST /v1/messages (streaming too) to
the real API with the key from its own environment. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

FORWARDED = ("anthropic-version", "anthropic-beta", "content-type", "accept")
HOP = {"connection", "transfer-encoding", "content-length", "content-encoding", "keep-alive"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ModelProxy"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = self.path.split("?", 1)[0]
        if not path.startswith("/v1/messages"):
            self._send(404, b'{"type":"error","error":{"type":"not_found_error","message":"only /v1/messages is proxied"}}')
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
        headers["x-api-key"] = self.server.api_key
        try:
            with self.server.http.stream("POST", self.server.upstream + self.path, content=body, headers=headers) as resp:
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for chunk in resp.iter_raw():
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
        except httpx.HTTPError as exc:
            self._send(502, ('{"type":"error","error":{"type":"api_error","message":"proxy: %s"}}' % type(exc).__name__).encode())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ModelProxy(ThreadingHTTPServer):
    """`with ModelProxy(api_key, upstream=...) as proxy:` serves on 127.0.0.1 (`proxy.url`) in a thread."""

    daemon_threads = True

    def __init__(self, api_key: str, *, upstream: str = "https://api.anthropic.com", port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.api_key = api_key
        self.upstream = upstream.rstrip("/")
        self.http = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "ModelProxy":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.http.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8788)
    ap.add_argument("--upstream", default=os.environ.get("TRACEKIT_PROXY_UPSTREAM", "https://api.anthropic.com"))
    args = ap.parse_args(argv)
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        print("error: set ANTHROPIC_API_KEY (the proxy adds it to every request)", file=sys.stderr)
        return 2
    proxy = ModelProxy(key, upstream=args.upstream, port=args.port)
    print(f"model proxy on {proxy.url} -> {proxy.upstream}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
