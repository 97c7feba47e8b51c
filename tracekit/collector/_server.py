"""Running the collector: in the foreground (`tracekit serve`) or on a background thread.

    serve(CollectorConfig.from_env(port=4318))            # blocks; SIGINT/SIGTERM stop it cleanly

    with CollectorThread(CollectorConfig.from_env(home=tmp, port=0)) as server:
        requests.post(server.url + "/v1/traces", ...)     # e.g. in tests and notebooks

The listening socket is bound before uvicorn starts, so port 0 yields a real port to print, and
connections made while the WAL is replayed wait in the backlog instead of being refused. uvicorn
speaks HTTP through `_conn.GuardedH11Protocol` (header and write deadlines, the connection cap),
and the process may open enough files for `max_connections` (the soft limit is raised to fit).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import resource
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import CollectorError
from ._settings import CollectorConfig

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("tracekit.collector")
FD_MARGIN = 256  # files besides connections: the store, the WAL, SQL worker pipes, the interpreter


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (else ~40 ms per response)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CollectorError(f"cannot listen on {host}:{port}: the port is in use{port_holder(port)}; "
                                 "pick another --port (0 picks a free one) or stop that process") from None
        raise CollectorError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def port_holder(port: int) -> str:
    """' (pid N: its command line)' of the process listening on `port`, from /proc (Linux), or '' if not knowable."""
    from .._util.termtext import clean

    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                cmd = (proc / "cmdline").read_bytes()[:300].replace(b"\0", b" ").decode("utf-8", "replace").strip()
                return f" (pid {proc.name}: {clean(cmd[:120], newlines=False)})"
        except OSError:
            continue
    return ""


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(config: CollectorConfig, log_level: str, extensions: Sequence[Callable[[Any], None]] = ()) -> uvicorn.Server:
    import uvicorn

    from . import create_app
    from ._conn import guarded_protocol

    app = create_app(config, extensions)
    limits = dataclasses.replace(config.conn, max_connections=_room_for_connections(config.conn.max_connections))
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=guarded_protocol(limits, app.state.collector.conn_stats),
            log_level=log_level,
            access_log=False,
            # a float works (uvicorn hands it to loop.call_later); its annotation says int
            timeout_keep_alive=config.conn.idle_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=10,
            lifespan="on",
        )
    )


def _room_for_connections(max_connections: int) -> int:
    """Raise the soft open-file limit so `max_connections` fit; past the hard limit, fewer (with a warning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + FD_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections
    if hard != resource.RLIM_INFINITY and hard < need:
        fit = max(hard - FD_MARGIN, 16)
        log.warning("tracekit collector: %d connections need %d open files but the hard limit is %d; "
                    "capping connections at %d (raise ulimit -n, or set TRACEKIT_MAX_CONNECTIONS)", max_connections, need, hard, fit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return fit
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return max_connections


def fence_line() -> str:
    """The serve banner's line on what keeps SQL clients from writing."""
    from .._util import landlock as _landlock
    from ._app import NO_LANDLOCK

    abi = _landlock.abi()
    return f"  SQL runs in read-only worker processes (Landlock ABI {abi})" if abi else "  " + NO_LANDLOCK


def serve(config: CollectorConfig, *, log_level: str = "warning", echo: Callable[[str], None] = print,
          extensions: Sequence[Callable[[Any], None]] = (), banner: Sequence[str] = ()) -> None:
    """Serve until interrupted; prints where it listens and how to point an OTel SDK at it.
    `extensions` go to create_app (the web UI); `banner` lines are printed after the URL ({url} filled in).

    The store and the port are claimed before the banner: a second `tracekit serve` on the same store
    or port ends in one CollectorError naming who holds it, not a banner and then uvicorn's traceback.
    """
    server = _uvicorn_server(config, log_level, extensions)
    home_lock = server.config.app.state.collector.ingestor.home_lock  # type: ignore[union-attr]  # the app create_app made
    sock = bind(config.host, config.port)
    url = url_of(sock)
    try:
        home_lock.claim(url=url)
    except BaseException:
        sock.close()
        raise
    if not config.loopback and not config.tokens.enabled:
        echo(f"warning: listening on {config.host} without tokens: anyone who can reach it can read and write traces; set TRACEKIT_TOKEN")
    echo(f"tracekit collector on {url} (store {config.home.resolve()}); docs {url}/docs")
    echo(f"  export OTEL_EXPORTER_OTLP_ENDPOINT={url}")
    echo(fence_line())
    for line in banner:
        echo(line.format(url=url))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not getattr(server, "started", False):
        raise CollectorError(f"the collector did not start (see the log above); store {config.home}")


class CollectorThread:
    """A collector serving from a daemon thread of this process (tests, notebooks, benchmarks)."""

    def __init__(self, config: CollectorConfig, *, log_level: str = "warning", extensions: Sequence[Callable[[Any], None]] = ()) -> None:
        self.config = config
        self.sock = bind(config.host, config.port)
        self.url = url_of(self.sock)
        self.server = _uvicorn_server(config, log_level, extensions)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 60.0) -> "CollectorThread":
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise CollectorError("the collector thread exited during startup (see the log)")
            if time.monotonic() > deadline:
                raise CollectorError(f"the collector did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.sock.close()

    @property
    def app(self) -> object:
        return self.server.config.app

    def __enter__(self) -> "CollectorThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
