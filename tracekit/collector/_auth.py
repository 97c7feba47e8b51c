"""Bearer tokens for the collector: who may send spans (ingest) and who may read them (read).

    tokens = Tokens.from_env()                   # TRACEKIT_TOKEN, TRACEKIT_INGEST_TOKEN, ..._TOKENS_FILE
    tokens.scopes_for("Bearer s3cret")          # frozenset({"ingest", "read"}) or None

Sources, all optional and combined:

- ``TRACEKIT_TOKEN``: full access (ingest and read).
- ``TRACEKIT_INGEST_TOKEN``: may only POST /v1/traces.
- ``TRACEKIT_READ_TOKEN``: may only use the /api/* read endpoints.
- a tokens file (``--tokens-file`` / ``TRACEKIT_TOKENS_FILE``), one token per line as
  ``<scope> <token>`` with scope ``ingest``, ``read`` or ``all``; ``#`` starts a comment.

With no token configured the collector is open (it binds 127.0.0.1 by default). Tokens are
compared in constant time; the file must not be readable by other users.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigError

INGEST = "ingest"
READ = "read"
SCOPES = {"ingest": frozenset({INGEST}), "read": frozenset({READ}), "all": frozenset({INGEST, READ})}
MIN_LENGTH = 16


@dataclass(frozen=True)
class Tokens:
    entries: tuple[tuple[str, frozenset[str]], ...] = field(default=())

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, tokens_file: str | Path | None = None) -> "Tokens":
        env = os.environ if env is None else env
        entries: list[tuple[str, frozenset[str]]] = []
        for var, scope in (("TRACEKIT_TOKEN", "all"), ("TRACEKIT_INGEST_TOKEN", "ingest"), ("TRACEKIT_READ_TOKEN", "read")):
            value = env.get(var, "").strip()
            if value:
                entries.append((_checked(value, var), SCOPES[scope]))
        path = tokens_file or env.get("TRACEKIT_TOKENS_FILE") or None
        if path:
            entries.extend(read_tokens_file(Path(path)))
        return cls(tuple(entries))

    def scopes_for(self, authorization: str | None) -> frozenset[str] | None:
        """The scopes of the token in an `Authorization: Bearer <token>` header; None if unknown."""
        if not authorization:
            return None
        kind, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            return None
        found: frozenset[str] | None = None
        for value, scopes in self.entries:  # check all of them: no early exit to time
            if hmac.compare_digest(value.encode(), token.encode()):
                found = scopes if found is None else found | scopes
        return found


def read_tokens_file(path: Path) -> list[tuple[str, frozenset[str]]]:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"tokens file {path}: cannot read it ({exc.strerror}); check the path") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"tokens file {path}: readable or writable by other users; run: chmod 600 {path}")
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in SCOPES:
            raise ConfigError(f"tokens file {path}, line {n}: expected '<ingest|read|all> <token>'")
        entries.append((_checked(parts[1], f"{path}:{n}"), SCOPES[parts[0]]))
    if not entries:
        raise ConfigError(f"tokens file {path}: no tokens in it; add lines like 'ingest <token>'")
    return entries


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_LENGTH:
        raise ConfigError(
            f"{where}: token is {len(token)} characters; use at least {MIN_LENGTH} "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token
