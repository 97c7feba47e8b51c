"""One root exception, a subclass per domain. Messages name the bad value, what was expected and the fix."""

from __future__ import annotations


class TracekitError(Exception):
    """Root of every error tracekit raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(TracekitError):
    """Bad configuration: an option, an environment variable or a config file."""


class StoreError(TracekitError):
    """The Parquet store is unreadable, or a file in it is not what tracekit wrote."""


class QueryError(TracekitError):
    """A SQL query failed; the message carries DuckDB's own and the tables and columns available."""


class SandboxError(TracekitError):
    """A sandboxed run could not be started (not: the candidate failed; that is a RunResult status)."""


class OptimizerError(TracekitError):
    """The optimization loop cannot proceed: bad target, inconsistent ledger, unusable proposer."""


class EvalError(TracekitError):
    """An eval task, dataset or scorer is invalid."""


class CollectorError(TracekitError):
    """The OTLP collector cannot start or serve."""


class TrajectoryError(TracekitError):
    """A trajectory cannot be built, exported or imported (e.g. an ATIF file that is not valid)."""


class TracekitWarning(UserWarning):
    """Root of tracekit's warnings: legitimate but probably not what was meant (the CLI prints them as one line)."""


class StoreWarning(TracekitWarning):
    """A query ran against a store folder that does not exist (or is not a store): every table reads empty."""
