"""SQL text built from values: string literals and lists (for ids, model names and file paths)."""

from __future__ import annotations

from collections.abc import Iterable


def sql_literal(value: object) -> str:
    """`value` as a SQL string literal (single quotes doubled): for ids and paths built into SQL."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values: Iterable[object]) -> str:
    """A SQL list literal of string literals: `['a', 'b']`."""
    return "[" + ", ".join(sql_literal(v) for v in values) + "]"
