"""The collector's settings: one frozen dataclass, from arguments or TRACEKIT_* environment variables.

    config = CollectorConfig.from_env(home=".tracekit", port=4318)
    app = create_app(config)

Environment mirrors (the CLI options win): TRACEKIT_HOST, TRACEKIT_PORT, TRACEKIT_HOME,
TRACEKIT_PROJECT, TRACEKIT_MAX_BODY_MB, TRACEKIT_MAX_READ_BODY_KB; connections:
TRACEKIT_HEADER_TIMEOUT, TRACEKIT_BODY_TIMEOUT, TRACEKIT_WRITE_TIMEOUT, TRACEKIT_IDLE_TIMEOUT,
TRACEKIT_MAX_CONNECTIONS; SQL: TRACEKIT_SQL_MAX_ROWS, TRACEKIT_SQL_TIMEOUT, TRACEKIT_SQL_MEMORY,
TRACEKIT_SQL_WORKERS, TRACEKIT_SQL_QUEUE_TIMEOUT, TRACEKIT_SQL_RECYCLE_MB; plus the token
variables read by `Tokens.from_env`. docs/collector.md has the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ..store import default_home
from ._auth import Tokens
from ._conn import ConnLimits
from ._pipeline import IngestLimits
from ._sql import SqlLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
MAX_BODY = 64 << 20  # the OTLP specification's recommended limit, after decompression too
MAX_READ_BODY = 1 << 20  # bodies of every other route (a SQL statement, mostly)


@dataclass(frozen=True)
class CollectorConfig:
    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    project: str | None = None  # for spans that name none (resource/span attribute, x-tracekit-project header)
    max_body_bytes: int = MAX_BODY
    max_read_body_bytes: int = MAX_READ_BODY
    max_inflight_bytes: int = 512 << 20  # request bodies being read or decoded at once; past it: 429
    retry_after: int = 1  # seconds, in 429/503 answers
    ingest: IngestLimits = field(default_factory=IngestLimits)
    sql: SqlLimits = field(default_factory=SqlLimits)
    conn: ConnLimits = field(default_factory=ConnLimits)
    tokens: Tokens = field(default_factory=Tokens)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, tokens_file: str | Path | None = None, **overrides: Any) -> "CollectorConfig":
        """Defaults, then TRACEKIT_* variables, then the keyword `overrides` (None values are skipped)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "home": default_home(env),
            "host": env.get("TRACEKIT_HOST") or DEFAULT_HOST,
            "port": _int(env, "TRACEKIT_PORT", DEFAULT_PORT),
            "project": env.get("TRACEKIT_PROJECT") or None,
            "max_body_bytes": int(_float(env, "TRACEKIT_MAX_BODY_MB", MAX_BODY / (1 << 20)) * (1 << 20)),
            "max_read_body_bytes": int(_float(env, "TRACEKIT_MAX_READ_BODY_KB", MAX_READ_BODY / 1024) * 1024),
        }
        max_rows = _int(env, "TRACEKIT_SQL_MAX_ROWS", SqlLimits.max_rows)
        values["sql"] = SqlLimits(
            max_rows=max_rows,
            default_rows=min(SqlLimits.default_rows, max_rows),
            timeout=_float(env, "TRACEKIT_SQL_TIMEOUT", SqlLimits.timeout),
            memory_limit=env.get("TRACEKIT_SQL_MEMORY") or SqlLimits.memory_limit,
            workers=_int(env, "TRACEKIT_SQL_WORKERS", SqlLimits.workers),
            queue_timeout=_float(env, "TRACEKIT_SQL_QUEUE_TIMEOUT", SqlLimits.queue_timeout),
            recycle_mb=_int(env, "TRACEKIT_SQL_RECYCLE_MB", SqlLimits.recycle_mb),
        )
        values["conn"] = ConnLimits(
            header_timeout=_float(env, "TRACEKIT_HEADER_TIMEOUT", ConnLimits.header_timeout),
            body_timeout=_float(env, "TRACEKIT_BODY_TIMEOUT", ConnLimits.body_timeout),
            write_timeout=_float(env, "TRACEKIT_WRITE_TIMEOUT", ConnLimits.write_timeout),
            idle_timeout=_float(env, "TRACEKIT_IDLE_TIMEOUT", ConnLimits.idle_timeout),
            max_connections=_int(env, "TRACEKIT_MAX_CONNECTIONS", ConnLimits.max_connections),
        )
        values["tokens"] = Tokens.from_env(env, tokens_file)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = Path(values["home"])
        if overrides.get("max_inflight_bytes") is None:  # room for two bodies of the largest size at once
            values["max_inflight_bytes"] = max(cls.max_inflight_bytes, 2 * int(values["max_body_bytes"]))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port}: use 0..65535 (0 picks a free port)")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max body {self.max_body_bytes} bytes: use at least 1 KiB (the OTLP default is 64 MiB)")
        if self.max_inflight_bytes < self.max_body_bytes:
            raise ConfigError(
                f"max in-flight bytes {self.max_inflight_bytes} is below the body limit {self.max_body_bytes}: "
                "a full-size request could never be accepted; raise it"
            )
        if self.sql.max_rows < 1 or self.sql.timeout <= 0:
            raise ConfigError("SQL limits: max rows must be >= 1 and the timeout > 0 seconds")
        if self.sql.workers < 1 or self.sql.queue_timeout < 0 or self.sql.recycle_mb < 1:
            raise ConfigError("SQL workers: use at least 1 worker, a queue timeout >= 0 s and a recycle size >= 1 MB")
        if self.max_read_body_bytes < 1024:
            raise ConfigError(f"max read body {self.max_read_body_bytes} bytes: use at least 1 KiB (the default is 1 MiB)")
        c = self.conn
        if min(c.header_timeout, c.body_timeout, c.write_timeout, c.idle_timeout) <= 0:
            raise ConfigError("connection timeouts (header, body, write, idle) must be > 0 seconds")
        if c.max_connections < 16:
            raise ConfigError(f"max connections {c.max_connections}: use at least 16 (the default is 1000)")
        import re

        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", self.sql.memory_limit.strip()):
            raise ConfigError(f"SQL memory limit {self.sql.memory_limit!r}: use a size like '1GB' or '512MiB'")

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
