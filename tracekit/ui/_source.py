"""Where the pages read from: the collector's SQL workers (and its WAL, folded first), or a local store.

    reader = source.reader()             # once per request: folds acknowledged spans (collector), then
    rows = reader.rows("SELECT ... WHERE trace_id = ?", [tid])     # tracekit's own parameterised SQL
    answer = reader.answer(user_sql, limit=1000, fmt="arrow")      # a client's SQL: validated, streamed

Both sources run every statement in `collector._sqlpool`'s read-only worker processes (Landlock,
DuckDB locked down), so a page can read no more than `POST /api/sql` can, and a slow or huge query
costs a worker's memory, not the server's. The collector's source shares the collector's pool and
tokens; the local one (`tracekit ui --home DIR`) has its own pool and never takes the store's
ingest lock, so it can watch a store that a running optimizer or collector writes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import QueryError
from ..collector._auth import Tokens
from ..collector._sql import SqlLimits
from ..collector._sqlpool import Answer, SqlService
from ._writes import WriteSource

if TYPE_CHECKING:
    from ..collector._state import CollectorState

SYNC_TIMEOUT = 10.0


class Unavailable(QueryError):
    """SQL cannot start (the store's views are broken, or the workers cannot start)."""


class Source(WriteSource, Protocol):
    """What the pages read from: a store, its SQL workers, and who may write (`_writes.WriteSource`)."""

    @property
    def home(self) -> Path: ...

    def service(self) -> SqlService: ...

    def sync(self) -> None: ...


@dataclass
class CollectorSource:
    """The pages inside `tracekit serve`: the collector's pool, its tokens, its WAL folded before each read."""

    state: "CollectorState"

    @property
    def home(self) -> Path:
        return self.state.config.home.resolve()

    @property
    def tokens(self) -> Tokens:
        return self.state.config.tokens

    @property
    def allow_writes(self) -> bool:
        """Only with tokens: without them the pages could not tell a writer from anyone who reaches the port."""
        return self.tokens.enabled

    @property
    def read_only_reason(self) -> str:
        return ("this collector has no tokens, so its pages only read: start it with TRACEKIT_TOKEN set (and sign in with that "
                "token) to annotate and review here, or use `tracekit ui --allow-writes`, `tracekit annotate`, `tracekit optimize review`")

    def service(self) -> SqlService:
        service = self.state.sql_service()
        if service is None:
            raise Unavailable(f"SQL is unavailable: {self.state.sql_error}")
        return service

    def sync(self) -> None:
        self.state.ingestor.sync(SYNC_TIMEOUT)  # a span the collector acknowledged is on the next page


@dataclass
class LocalSource:
    """The pages of `tracekit ui --home DIR`: a pool of its own over the store's files, no ingest."""

    home: Path
    limits: SqlLimits = field(default_factory=SqlLimits)
    token_set: Tokens = field(default_factory=Tokens)
    writes: bool = False  # `tracekit ui --allow-writes`: the annotation and review forms store what they are sent
    _service: SqlService | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens(self) -> Tokens:
        return self.token_set

    @property
    def allow_writes(self) -> bool:
        return self.writes

    @property
    def read_only_reason(self) -> str:
        return ("`tracekit ui` is read-only unless started with --allow-writes: restart it so to annotate and review here "
                "(or use `tracekit annotate` and `tracekit optimize review`)")

    def service(self) -> SqlService:
        with self._lock:
            if self._service is None:
                try:
                    self._service = SqlService(self.home, self.limits)
                except QueryError as exc:
                    raise Unavailable(str(exc)) from None
            return self._service

    def sync(self) -> None:
        """Nothing to fold: writers put whole Parquet files in the store, which each query lists anew."""

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None


class Reader:
    """One request's reads (after one sync)."""

    def __init__(self, source: Source) -> None:
        source.sync()
        self.sql = source.service()

    def rows(self, sql: str, params: list[Any] | None = None, *, limit: int = 100_000) -> list[dict[str, Any]]:
        """tracekit's own parameterised SQL (no client text in `sql`), as dicts."""
        rows: list[dict[str, Any]] = self.sql.run_trusted(sql, params, limit=limit).to_pylist()
        return rows

    def one(self, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
        found = self.rows(sql, params, limit=1)
        return found[0] if found else None

    def answer(self, sql: str, *, limit: int, fmt: str, timeout: float | None = None) -> Answer:
        """A client's SQL: one read-only SELECT (validated like /api/sql), streamed."""
        return self.sql.answer(sql, limit=limit, fmt=fmt, timeout=timeout)
