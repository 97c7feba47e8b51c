"""`tracekit ui`: the web UI over a local store, without a collector (no ingest; read-only unless --allow-writes).

    tracekit ui                              # http://127.0.0.1:4319/ui/ over ./.tracekit
    tracekit ui --home runs/.tracekit --port 8080
    tracekit ui --allow-writes               # plus the review and annotation forms (see docs/ui.md)
    TRACEKIT_TOKEN=... tracekit ui --host 0.0.0.0  # then open /ui/?token=... once

`tracekit serve` serves the same pages at /ui/ next to the collector's API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import HomeOption

DEFAULT_PORT = 4319


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui_cmd(
        home: HomeOption = None,
        host: Annotated[str, typer.Option(help="Address to bind (loopback by default: the pages show every trace).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help=f"Port (default {DEFAULT_PORT}; 0 picks a free one).")] = DEFAULT_PORT,
        tokens_file: Annotated[Path | None, typer.Option("--tokens-file", envvar="TRACEKIT_TOKENS_FILE", help="Lines of '<ingest|read|all> <token>'.", show_default=False)] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: critical | error | warning | info | debug.")] = "warning",
        allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Let the pages' forms annotate and review (with tokens on: "
                                                   "only sessions of a token that may ingest).")] = False,
    ) -> None:
        """Browse traces, optimizer runs and evals in a web browser (read-only pages over the store).

        Example: tracekit ui --home .tracekit   (then open http://127.0.0.1:4319/ui/)
        """
        from ..collector import CollectorConfig
        from ..ui import UIConfig
        from ..ui._server import serve

        base = CollectorConfig.from_env(tokens_file=tokens_file, home=home, host=host, port=port)  # the same env and checks as serve
        config = UIConfig(home=base.home, host=base.host, port=base.port, sql=base.sql, tokens=base.tokens, allow_writes=allow_writes)
        if not config.home.is_dir():
            from .._errors import ConfigError

            raise ConfigError(f"no store at {config.home}; pass --home DIR (a folder with spans/, experiments/, ...) or run something traced first")
        serve(config, log_level=log_level, echo=lambda line: typer.echo(line, err=True))
