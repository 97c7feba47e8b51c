"""Serving the pages alone (`tracekit ui`): in the foreground, or on a thread (tests, benchmarks).

    serve(UIConfig(home=Path(".tracekit")))                  # blocks; Ctrl-C stops it
    with UIThread(UIConfig(home=tmp, port=0)) as ui: httpx.get(ui.url + "/ui/traces")

It listens like the collector (`collector._server.bind`: the socket bound before uvicorn starts, so
port 0 gives a real port to print) and speaks HTTP through the collector's guarded protocol
(header and write deadlines, a connection cap).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import CollectorError
from ..collector._conn import ConnLimits, ConnStats, guarded_protocol
from ..collector._server import bind, url_of
from ._app import UIConfig, create_app

if TYPE_CHECKING:
    import uvicorn


def _server(config: UIConfig, log_level: str) -> "uvicorn.Server":
    import uvicorn

    return uvicorn.Server(uvicorn.Config(
        create_app(config), http=guarded_protocol(ConnLimits(), ConnStats()), log_level=log_level, access_log=False,
        timeout_graceful_shutdown=5, lifespan="on",
    ))


def banner(url: str, config: UIConfig) -> list[str]:
    writes = "the review and annotation forms write to it" if config.allow_writes else "read-only"
    lines = [f"tracekit ui on {url}/ui/ (store {config.home.resolve()}; {writes}, no ingest)"]
    if config.tokens.enabled:
        lines.append(f"  tokens are on: open {url}/ui/?token=<a read token> once (it becomes a session cookie), or sign in on the page")
    elif not config.loopback:
        lines.append(f"warning: listening on {config.host} without tokens: anyone who can reach it can read every trace; set TRACEKIT_TOKEN")
    return lines


def serve(config: UIConfig, *, log_level: str = "warning", echo: Callable[[str], None] = print) -> None:
    sock = bind(config.host, config.port)
    for line in banner(url_of(sock), config):
        echo(line)
    server = _server(config, log_level)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not getattr(server, "started", False):
        raise CollectorError(f"the UI did not start (see the log above); store {config.home}")


class UIThread:
    """The pages served from a daemon thread of this process."""

    def __init__(self, config: UIConfig, *, log_level: str = "warning") -> None:
        self.config = config
        self.sock = bind(config.host, config.port)
        self.url = url_of(self.sock)
        self.server = _server(config, log_level)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 60.0) -> "UIThread":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CollectorError("the UI server did not start (see the log)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.sock.close()

    def __enter__(self) -> "UIThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
