"""Reading a Parquet file someone else wrote, within a row and decoded-byte budget.

A file's size says little about what it decodes to: zstd turns 2 KB into a 50 MB page, a
dictionary-encoded column becomes one copy of its value per row (40 rows of one 50 MB string
are 2 GB once dense), run-length encoded levels turn a few bytes into millions of list entries,
and parquet-cpp allocates every page at the size its header claims, trusting it. So before any
data is decoded, the page headers of the columns to be read are walked here (a minimal Thrift
compact-protocol reader: only sizes and value counts are taken from them), and what parquet-cpp
holds at once (per column its largest dictionary and data page, their value counts) must fit the
budget; the footer's row count tells how much of the file the row cap lets in. Then batches are
read with every string column kept dictionary-encoded, each batch's dense size is computed from
its dictionary's value lengths, and reading stops at the row or byte cap before anything is made
dense. Memory stays within a small multiple of the byte budget whatever the file claims.

    rows, notes = read_capped(get_table("spans"), data, Budget(rows=200_000, bytes=64 << 20), "spool/spans/a.parquet")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from ._schema import Table

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

BATCH_ROWS = 1024
MAX_PAGES = 100_000  # per file; walking the headers costs Python time per page
VALUE_BYTES = 4  # the least a decoded value costs (an offset, an index or a timestamp's half)
_PADDING = 100  # parquet-cpp reads this far past a column chunk for files from some old writers


@dataclass
class Budget:
    """What is left to read: rows and decoded bytes (both go down as files are read)."""

    rows: int
    bytes: int


class _Thrift:
    """Just enough of Thrift's compact protocol to read a PageHeader and skip what it does not need."""

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("page header runs past the end of the file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        out = shift = 0
        for _ in range(10):
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
        raise ValueError("malformed varint in a page header")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, Thrift type) of each field of the struct here, up to its stop byte."""
        last = 0
        while True:
            b = self.byte()
            if b == 0:
                return
            delta, ftype = b >> 4, b & 0x0F
            last = last + delta if delta else self.zigzag()
            yield last, ftype

    def skip(self, ftype: int, depth: int = 0) -> None:
        if depth > 32:
            raise ValueError("page header nested too deeply")
        if ftype in (1, 2):  # bool: the value is in the type
            return
        if ftype == 3:
            self.pos += 1
        elif ftype in (4, 5, 6):
            self.varint()
        elif ftype == 7:
            self.pos += 8
        elif ftype == 8:
            size = self.varint()  # not `self.pos += self.varint()`: that adds to the position before the varint
            self.pos += size
        elif ftype in (9, 10):
            head = self.byte()
            size, etype = (head >> 4 if head >> 4 != 15 else self.varint()), head & 0x0F
            self._room(size)
            for _ in range(size):
                if etype in (1, 2):
                    self.pos += 1
                else:
                    self.skip(etype, depth + 1)
        elif ftype == 11:
            size = self.varint()
            self._room(2 * size)
            kv = self.byte() if size else 0
            for _ in range(size):
                self.skip(kv >> 4, depth + 1)
                self.skip(kv & 0x0F, depth + 1)
        elif ftype == 12:
            for _, t in self.fields():
                self.skip(t, depth + 1)
        else:
            raise ValueError(f"unknown Thrift type {ftype} in a page header")
        if self.pos > len(self.data):
            raise ValueError("page header runs past the end of the file")

    def _room(self, items: int) -> None:
        if items > len(self.data) - self.pos:  # every element takes at least a byte: a bogus count
            raise ValueError("page header declares more elements than the file holds")

    def page_header(self) -> tuple[int, int, int, bool]:
        """(uncompressed size, compressed size, values, is a data page) of the PageHeader here."""
        sizes = {2: -1, 3: -1}
        values, data_page = 0, False
        for fid, ftype in self.fields():
            if fid in (2, 3) and ftype == 5:
                sizes[fid] = self.zigzag()
            elif fid in (5, 7, 8) and ftype == 12:  # data, dictionary, data v2: num_values is field 1
                data_page = fid != 7
                for sub, t in self.fields():
                    if sub == 1 and t == 5:
                        values = self.zigzag()
                    else:
                        self.skip(t)
            else:
                self.skip(ftype)
        if sizes[2] < 0 or sizes[3] < 0 or values < 0:
            raise ValueError("page header without valid sizes")
        return sizes[2], sizes[3], values, data_page


def _pages(data: memoryview, start: int, length: int, num_values: int) -> tuple[int, int, int]:
    """(largest dictionary page + largest data page, largest page's values, pages) of one column chunk.

    Like parquet-cpp: data pages are read until their values reach the chunk's `num_values` or the
    chunk (plus the padding it allows old writers) ends.
    """
    end = min(start + length + _PADDING, len(data))
    pos, seen, pages = start, 0, 0
    biggest = {True: 0, False: 0}  # data page / dictionary page
    values = 0
    while pos < end and seen < num_values and pages < MAX_PAGES:
        reader = _Thrift(data, pos)
        try:
            uncompressed, compressed, n, data_page = reader.page_header()
        except ValueError:
            if pos >= start + length:
                break  # past the chunk: padding, not a page
            raise
        biggest[data_page] = max(biggest[data_page], uncompressed)
        values, pages = max(values, n), pages + 1
        seen += n if data_page else 0
        pos = reader.pos + compressed
    if pages >= MAX_PAGES and pos < end and seen < num_values:
        raise ValueError(f"a column chunk has more than {MAX_PAGES} pages")
    return biggest[True] + biggest[False], values, pages


def check_pages(data: bytes, meta: pq.FileMetaData, columns: set[str]) -> tuple[int, int]:
    """What decoding the top-level `columns` holds in memory at once, from the page headers.

    parquet-cpp keeps one decompressed page (plus its dictionary) per column while it reads, so
    this is (sum over leaf columns of their largest dictionary + data page, the same for values).
    """
    view = memoryview(data)
    pages = 0
    per_column: dict[str, tuple[int, int]] = {}
    if meta.num_row_groups * meta.num_columns > MAX_PAGES:
        raise ValueError(f"more than {MAX_PAGES} column chunks")
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            if col.path_in_schema.split(".")[0] not in columns:
                continue
            start = col.data_page_offset
            if col.has_dictionary_page and col.dictionary_page_offset and 0 < col.dictionary_page_offset < start:
                start = col.dictionary_page_offset
            if start < 0 or col.total_compressed_size < 0 or start > len(data):
                raise ValueError(f"column {col.path_in_schema} points outside the file")
            size, values, n = _pages(view, start, col.total_compressed_size, col.num_values)
            pages += n
            if pages > MAX_PAGES:
                raise ValueError(f"more than {MAX_PAGES} pages")
            was = per_column.get(col.path_in_schema, (0, 0))
            per_column[col.path_in_schema] = (max(was[0], size), max(was[1], values))
    return sum(s for s, _ in per_column.values()), sum(v for _, v in per_column.values())


def _dense_bytes(arr: pa.Array[Any]) -> int:
    """What `arr` occupies once every dictionary is expanded, computed without expanding it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.DictionaryArray):
        values = arr.dictionary
        lengths: pa.Array[Any]
        if isinstance(values, (pa.StringArray, pa.BinaryArray)):
            lengths = pc.binary_length(values)
        else:
            lengths = pa.array([values.nbytes // max(len(values), 1)] * len(values), pa.int64())
        taken = pc.sum(pc.take(lengths, arr.indices)).as_py() or 0
        return int(taken) + VALUE_BYTES * len(arr)
    if isinstance(arr, (pa.ListArray, pa.LargeListArray)) and not isinstance(arr, pa.MapArray):  # pa.types.is_list
        return VALUE_BYTES * (len(arr) + 1) + _dense_bytes(arr.flatten())
    if isinstance(arr, pa.StructArray):
        return sum(_dense_bytes(child) for child in arr.flatten()) + len(arr) // 8
    return int(arr.nbytes)


def _batch_bytes(batch: pa.RecordBatch) -> int:
    return sum(_dense_bytes(col) for col in batch.columns)


def read_capped(spec: Table, data: bytes, budget: Budget, label: str) -> tuple["pa.Table", list[str]]:
    """The rows of `spec`'s table in Parquet `data`, within `budget` (reduced by what was read); notes on cuts.

    StoreError when the file is not a readable tracekit file of that table or cannot fit at all.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ._conform import check_file_schema, conform

    notes: list[str] = []
    try:
        meta = pq.read_metadata(pa.BufferReader(data))
        schema = meta.schema.to_arrow_schema()
        check_file_schema(spec, schema, label)
        wanted = [n for n in spec.column_names() if n in schema.names]
        at_once, values = check_pages(data, meta, set(wanted))
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{label}: not a readable Parquet file ({exc})") from exc
    if at_once > budget.bytes or values * VALUE_BYTES > budget.bytes:
        raise StoreError(f"{label}: its pages decode to at least {max(at_once, values * VALUE_BYTES)} bytes at once, over "
                         f"the {budget.bytes} bytes left of the trace budget; it was not read")
    if meta.num_rows > budget.rows:
        notes.append(f"{label}: {meta.num_rows} rows; only the first {budget.rows} fit the row cap")
    dict_paths = [meta.schema.column(i).path for i in range(meta.num_columns)
                  if meta.schema.column(i).physical_type == "BYTE_ARRAY" and meta.schema.column(i).path.split(".")[0] in wanted]
    parts = []
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=dict_paths)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted, use_threads=False):
            if budget.rows <= 0:
                break
            if batch.num_rows > budget.rows:
                batch = batch.slice(0, budget.rows)
            size = _batch_bytes(batch)
            full = size <= budget.bytes
            while size > budget.bytes and batch.num_rows > 1:  # the part of the last batch that still fits
                batch = batch.slice(0, batch.num_rows // 2)
                size = _batch_bytes(batch)
            if size <= budget.bytes:
                parts.append(conform(spec, pa.Table.from_batches([batch])))
                budget.rows -= batch.num_rows
                budget.bytes -= size
            if not full:
                notes.append(f"{label}: stopped after {sum(p.num_rows for p in parts)} rows; the rest decodes past "
                             "the trace budget (raise trace_bytes, or emit smaller spans)")
                break
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{label}: not a readable Parquet file ({exc})") from exc
    if not parts:
        return spec.arrow_schema().empty_table(), notes
    return pa.concat_tables(parts), notes
