"""`tracekit serve`: run the OTLP/HTTP collector (FastAPI on uvicorn) over a store.

    tracekit serve                                  # 127.0.0.1:4318, store ./.tracekit
    TRACEKIT_TOKEN=... tracekit serve --host 0.0.0.0 --port 4318 --home /data/traces
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python agent.py   # send spans to it
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import HomeOption, choices


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[str | None, typer.Option(envvar="TRACEKIT_HOST", help="Address to bind (default 127.0.0.1).", show_default=False)] = None,
        port: Annotated[int | None, typer.Option(envvar="TRACEKIT_PORT", help="Port (default 4318, the OTLP/HTTP port; 0 picks a free one).", show_default=False)] = None,
        home: HomeOption = None,
        project: Annotated[str | None, typer.Option(envvar="TRACEKIT_PROJECT", help="Project for spans that name none.", show_default=False)] = None,
        tokens_file: Annotated[Path | None, typer.Option("--tokens-file", envvar="TRACEKIT_TOKENS_FILE", help="Lines of '<ingest|read|all> <token>'.", show_default=False)] = None,
        max_body_mb: Annotated[float | None, typer.Option("--max-body-mb", envvar="TRACEKIT_MAX_BODY_MB", help="Request size limit after decompression (default 64).", show_default=False)] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: critical | error | warning | info | debug.",
                                               callback=choices("critical", "error", "warning", "info", "debug"))] = "warning",
    ) -> None:
        """Receive OpenTelemetry spans over OTLP/HTTP (protobuf or JSON) into the store; read-only SQL over HTTP.

        Example: tracekit serve --port 4318 --home .tracekit   (then POST spans to http://127.0.0.1:4318/v1/traces;
        API docs at /docs; the web UI at /ui/; with TRACEKIT_TOKEN set every endpoint but /health needs 'Authorization: Bearer',
        and the pages ask for a read token once)
        """
        from ..collector import CollectorConfig
        from ..collector._server import serve
        from ..ui import install

        max_body_bytes = int(max_body_mb * (1 << 20)) if max_body_mb is not None else None
        config = CollectorConfig.from_env(tokens_file=tokens_file, host=host, port=port, home=home, project=project,
                                          max_body_bytes=max_body_bytes)
        serve(config, log_level=log_level, echo=lambda line: typer.echo(line, err=True), extensions=[install],
              banner=["  web UI: {url}/ui/" + (" (open it with ?token=<a read token> once)" if config.tokens.enabled else "")])
