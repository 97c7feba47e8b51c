"""Reading a table's Parquet file back: its version checked, its columns conformed to the schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from ._schema import SCHEMA_KEY, SCHEMA_VERSION, TABLE_KEY, Table

if TYPE_CHECKING:
    import pyarrow as pa


def check_file_schema(spec: Table, schema: "pa.Schema", label: object) -> None:
    """StoreError unless `schema` (a Parquet file's) is a tracekit file of `spec`'s table this version can read."""
    meta = schema.metadata or {}
    table_name = meta.get(TABLE_KEY, b"").decode(errors="replace") or spec.name
    if table_name != spec.name:
        raise StoreError(f"{label}: holds table {table_name!r}, expected {spec.name!r}")
    try:
        version = int(meta.get(SCHEMA_KEY, b"0") or 0)
    except ValueError:
        version = 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"{label}: schema version {version} is newer than this tracekit's {SCHEMA_VERSION}; upgrade tracekit-loop")
    if version < 1:
        raise StoreError(f"{label}: no tracekit schema version in its metadata; not a tracekit {spec.name} file")


def read_file(spec: Table, path: Path) -> "pa.Table":
    """Read one Parquet file of `spec`'s table, checking its version, conformed to the current schema."""
    import pyarrow.parquet as pq

    try:
        if path.is_symlink():
            raise StoreError(f"{path}: is a symlink; tracekit only reads regular files it wrote")
        pf = pq.ParquetFile(path)
        check_file_schema(spec, pf.schema_arrow, path)
        data = pf.read()
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({exc})") from exc
    return conform(spec, data)


def conform(spec: Table, data: "pa.Table | Sequence[Mapping[str, Any]]") -> "pa.Table":
    """`data` as an Arrow table with exactly `spec`'s columns, in order, typed (missing -> null), legacy
    values renamed (`Column.legacy`)."""
    import pyarrow as pa

    schema = spec.arrow_schema()
    if not isinstance(data, pa.Table):
        rows = list(data)
        unknown = {k for r in rows for k in r} - set(schema.names)
        if unknown:
            raise StoreError(f"unknown columns for table {spec.name!r}: {sorted(unknown)}; columns: {schema.names}")
        try:
            return _renamed_values(spec, pa.Table.from_pylist(rows, schema=schema))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise StoreError(f"rows do not fit table {spec.name!r}: {exc}") from exc
    cols = []
    for f in schema:
        if f.name in data.column_names:
            col = data.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise StoreError(f"column {f.name!r} of {spec.name!r}: cannot read {col.type} as {f.type} ({exc})") from exc
            cols.append(col)
        else:
            cols.append(pa.nulls(data.num_rows, type=f.type))
    out = _renamed_values(spec, pa.Table.from_arrays(cols, schema=schema))
    missing = [f.name for f in schema if not f.nullable and out.column(f.name).null_count]
    if missing:
        raise StoreError(f"table {spec.name!r}: required columns have nulls: {missing}")
    return out


def _renamed_values(spec: Table, table: "pa.Table") -> "pa.Table":
    """Legacy values (`Column.legacy`) replaced: files read back and rows written both say today's word."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in spec.columns:
        for old, new in c.legacy:
            i = table.schema.get_field_index(c.name)
            col = table.column(i)
            is_old = pc.equal(col, pa.scalar(old, col.type))
            table = table.set_column(i, table.schema.field(i), pc.if_else(is_old, pa.scalar(new, col.type), col))
    return table
