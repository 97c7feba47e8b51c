"""The tables of the store: one source of truth for Parquet, DuckDB and JSON Schema.

Every table tracekit writes is declared here as a `Table` of typed `Column`s. From that one
declaration come the Arrow schema used to write Parquet, the DuckDB DDL and the JSON Schema in
`schemas/` (regenerate with `python -m tracekit._schema schemas/`; a test fails on drift).

Bump `SCHEMA_VERSION` when a column changes meaning or type; adding a nullable column does not
need a bump (readers union files by column name). Every Parquet file records the version and
table in its key-value metadata.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA_KEY = b"tracekit.schema_version"
TABLE_KEY = b"tracekit.table"


@dataclass(frozen=True)
class Type:
    """A column type: `kind` is one of string, json, int64, float64, bool, timestamp, list, struct."""

    kind: str
    item: "Type | None" = None  # for list
    fields: tuple[tuple[str, "Type"], ...] = ()  # for struct

    def arrow(self) -> Any:
        import pyarrow as pa

        simple = {
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


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = field(default=())  # columns that identify a row (used by compaction checks)

    def arrow_schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [pa.field(c.name, c.type.arrow(), nullable=not c.required) for c in self.columns],
            metadata={SCHEMA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: self.name.encode()},
        )

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


EVENT = struct(time=TIMESTAMP, name=STRING, attributes=JSON)
LINK = struct(trace_id=STRING, span_id=STRING, attributes=JSON)

SPANS = Table(
    name="spans",
    doc="One row per finished span (OpenTelemetry), from tracekit's decorators, any OTel instrumentation, OTLP or sandboxed runs.",
    key=("trace_id", "span_id"),
    columns=(
        Column("trace_id", STRING, "32 lowercase hex digits (W3C trace id).", required=True),
        Column("span_id", STRING, "16 lowercase hex digits.", required=True),
        Column("parent_span_id", STRING, "The parent's span id; null for a root span."),
        Column("name", STRING, "Span name.", required=True),
        Column("kind", STRING, "agent | llm | tool | chain | eval | run | retriever | embedding | span (OpenInference-compatible, lowercase).", required=True),
        Column("span_kind", STRING, "OpenTelemetry SpanKind: internal | server | client | producer | consumer."),
        Column("start_time", TIMESTAMP, "Start, UTC.", required=True),
        Column("end_time", TIMESTAMP, "End, UTC.", required=True),
        Column("duration_ms", FLOAT64, "end_time - start_time in milliseconds.", required=True),
        Column("status", STRING, "ok | error | unset.", required=True),
        Column("status_message", STRING, "The status description (an error's message)."),
        Column("service_name", STRING, "Resource attribute service.name."),
        Column("project", STRING, "tracekit project (resource or span attribute tracekit.project)."),
        Column("experiment_id", STRING, "Optimizer experiment the span belongs to (tracekit.experiment_id)."),
        Column("input", JSON, "Captured input as JSON text (tracekit decorators, OpenInference input.value)."),
        Column("output", JSON, "Captured output as JSON text."),
        Column("attributes", JSON, "All other span attributes as a JSON object."),
        Column("events", list_of(EVENT), "Span events (exceptions, metrics, GenAI events), attributes as JSON."),
        Column("links", list_of(LINK), "Span links."),
        Column("resource", JSON, "Resource attributes as a JSON object."),
        Column("scope", STRING, "Instrumentation scope name."),
    ),
)

# The registry of stored tables: other components add theirs (experiments, eval_results).
TABLES: dict[str, Table] = {SPANS.name: SPANS}


def register_table(table: Table) -> Table:
    TABLES[table.name] = table
    return table


def get_table(name: str) -> Table:
    _load_component_tables()
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(sorted(TABLES))}") from None


# Modules that declare tables of their own; imported lazily so `import tracekit` stays light.
COMPONENT_TABLE_MODULES: list[str] = ["tracekit.evals._tables", "tracekit.optimizer._ledger"]


def _load_component_tables() -> None:
    import importlib

    for mod in COMPONENT_TABLE_MODULES:
        importlib.import_module(mod)


def all_tables() -> dict[str, Table]:
    _load_component_tables()
    return dict(TABLES)


def render(out_dir: Path) -> dict[Path, str]:
    """The files of `schemas/`: per table a JSON Schema and DuckDB DDL, plus an index."""
    files: dict[Path, str] = {}
    tables = all_tables()
    for name, table in sorted(tables.items()):
        files[out_dir / f"{name}.schema.json"] = json.dumps(table.json_schema(), indent=2) + "\n"
        files[out_dir / f"{name}.sql"] = table.ddl()
    index = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": "python -m tracekit._schema schemas/",
        "tables": {n: {"doc": t.doc, "key": list(t.key), "columns": t.column_names()} for n, t in sorted(tables.items())},
    }
    files[out_dir / "index.json"] = json.dumps(index, indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "schemas")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in render(out).items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # run as a script: use the imported module, where component tables register
    from tracekit._schema import main as _main

    sys.exit(_main(sys.argv[1:]))
