"""The tables of the store: one source of truth for Parquet, DuckDB and JSON Schema.

Every table tracekit writes is declared here as a `Table` of typed `Column`s. From that one
declaration come the Arrow schema used to write Parquet, the DuckDB DDL and the JSON Schema in
`schemas/` (regenerate with `python -m tracekit.store schemas docs/tables.md`; a test fails on drift).

Bump `SCHEMA_VERSION` when a column changes meaning or type; adding a nullable column does not
need a bump (readers union files by column name). Every Parquet file records the version and
table in its key-value metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1
SCHEMA_KEY = b"tracekit.schema_version"
TABLE_KEY = b"tracekit.table"


@dataclass(frozen=True)
class Type:
    """A column type: `kind` is one of string, json, int64, float64, bool, timestamp, list, struct."""

    kind: str
    item: "Type | None" = None  # for list
    fields: tuple[tuple[str, "Type"], ...] = ()  # for struct

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        simple: dict[str, pa.DataType] = {
            "string": pa.string(),
            "json": pa.string(),
            "int64": pa.int64(),
            "float64": pa.float64(),
            "bool": pa.bool_(),
            "timestamp": pa.timestamp("us"),
        }
        if self.kind in simple:
            return simple[self.kind]
        if self.kind == "list":
            assert self.item is not None
            return pa.list_(self.item.arrow())
        if self.kind == "struct":
            return pa.struct([(n, t.arrow()) for n, t in self.fields])
        raise ValueError(f"unknown column type {self.kind!r}")

    def duckdb(self) -> str:
        simple = {
            "string": "VARCHAR",
            "json": "VARCHAR",
            "int64": "BIGINT",
            "float64": "DOUBLE",
            "bool": "BOOLEAN",
            "timestamp": "TIMESTAMP",
        }
        if self.kind in simple:
            return simple[self.kind]
        if self.kind == "list":
            assert self.item is not None
            return f"{self.item.duckdb()}[]"
        if self.kind == "struct":
            return "STRUCT(" + ", ".join(f"{n} {t.duckdb()}" for n, t in self.fields) + ")"
        raise ValueError(f"unknown column type {self.kind!r}")

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "string":
            return {"type": "string"}
        if self.kind == "json":
            return {"type": "string", "contentMediaType": "application/json"}
        if self.kind == "int64":
            return {"type": "integer"}
        if self.kind == "float64":
            return {"type": "number"}
        if self.kind == "bool":
            return {"type": "boolean"}
        if self.kind == "timestamp":
            return {"type": "string", "format": "date-time", "description": "UTC, microseconds"}
        if self.kind == "list":
            assert self.item is not None
            return {"type": "array", "items": self.item.json_schema()}
        if self.kind == "struct":
            return {
                "type": "object",
                "properties": {n: t.json_schema() for n, t in self.fields},
                "additionalProperties": False,
            }
        raise ValueError(f"unknown column type {self.kind!r}")


STRING = Type("string")
JSON = Type("json")
INT64 = Type("int64")
FLOAT64 = Type("float64")
BOOL = Type("bool")
TIMESTAMP = Type("timestamp")


def list_of(item: Type) -> Type:
    return Type("list", item=item)


def struct(**fields: Type) -> Type:
    return Type("struct", fields=tuple(fields.items()))


@dataclass(frozen=True)
class Column:
    name: str
    type: Type
    doc: str
    required: bool = False
    # (old, new) values: files written before a vocabulary change hold `old`; every read and write sees `new`
    legacy: tuple[tuple[str, str], ...] = ()

    def read_sql(self) -> str:
        """The SQL expression that reads this column with its legacy values replaced."""
        if not self.legacy:
            return self.name
        whens = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in self.legacy)
        return f"CASE {self.name} {whens} ELSE {self.name} END"


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = field(default=())  # columns that identify a row (used by compaction checks)

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [pa.field(c.name, c.type.arrow(), nullable=not c.required) for c in self.columns],
            metadata={SCHEMA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: self.name.encode()},
        )

    def read_select(self, source: str) -> str:
        """`SELECT * FROM source` with legacy column values replaced (`Column.legacy`)."""
        fixed = [f"{c.read_sql()} AS {c.name}" for c in self.columns if c.legacy]
        return f"SELECT * REPLACE ({', '.join(fixed)}) FROM ({source})" if fixed else f"SELECT * FROM ({source})"

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        cols = ",\n".join(
            f"    {c.name} {c.type.duckdb()}{' NOT NULL' if c.required else ''}" for c in self.columns
        )
        return f"-- {self.doc}\nCREATE TABLE {self.name} (\n{cols}\n);\n"

    def json_schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for c in self.columns:
            s = dict(c.type.json_schema())
            s["description"] = (s.get("description", "") + " " if "description" in s else "") + c.doc
            props[c.name] = s if c.required else {"anyOf": [s, {"type": "null"}], "description": s["description"]}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://tracekit.dev/schemas/v{SCHEMA_VERSION}/{self.name}.schema.json",
            "title": self.name,
            "description": self.doc,
            "type": "object",
            "properties": props,
            "required": [c.name for c in self.columns if c.required],
            "additionalProperties": False,
            "x-tracekit-schema-version": SCHEMA_VERSION,
        }
