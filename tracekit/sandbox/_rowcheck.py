"""Rows a run brought home, checked before they enter the store: ids, sizes, claims, and re-tagged.

A run may add spans and eval rows and nothing else (see `_spool.ALLOWED_TABLES`), and only rows
that are its own:

- every field at most `MAX_FIELD_BYTES` (nested event / link text counted per row), at most
  `MAX_LIST_ITEMS` events or links per span;
- span ids well formed (32 / 16 lowercase hex digits, not all zero), never the harness's run span
  id, no (trace_id, span_id) twice;
- a trace id is either the run's own trace or one the store has never seen: a run cannot add
  spans to (or point eval rows at) another experiment's trace, and in its own trace it cannot
  reuse a span id the store already holds;
- eval runs are new to the store, and every eval result belongs to an eval run this run started;
- `experiment_id` and `project` are set to the run's on every row, whatever the run wrote.

Each refusal drops the row and leaves a note saying how many and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from ..store._store import Store

MAX_FIELD_BYTES = 1 << 20
MAX_LIST_ITEMS = 10_000
TRACE_ID = r"^[0-9a-f]{32}$"
SPAN_ID = r"^[0-9a-f]{16}$"


@dataclass(frozen=True)
class RunIds:
    """Who the rows belong to: the run's experiment and project, and its run span (None when unknown)."""

    experiment_id: str
    project: str
    trace_id: str | None = None
    span_id: str | None = None


def _keep(t: "pa.Table", ok: Any, why: str, notes: list[str]) -> "pa.Table":
    """`t` filtered by the boolean array `ok` (null counts as refused), with a note when rows go."""
    import pyarrow.compute as pc

    ok = pc.fill_null(ok, False)
    dropped = t.num_rows - (pc.sum(ok).as_py() or 0)
    if dropped:
        table = (t.schema.metadata or {}).get(b"tracekit.table", b"rows").decode(errors="replace")
        notes.append(f"{table}: {dropped} row(s) refused: {why}")
        t = t.filter(ok)
    return t


def _id_ok(col: Any, pattern: str, *, nullable: bool) -> Any:
    import pyarrow.compute as pc

    ok = pc.and_(pc.match_substring_regex(col, pattern), pc.invert(pc.match_substring_regex(col, r"^0+$")))
    return pc.or_kleene(pc.is_null(col), ok) if nullable else ok


def _row_bytes(col: Any) -> tuple[Any, Any]:
    """Per row of a column: (bytes of text in it, list items in it) as int64 arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(col)
    if pa.types.is_string(col.type) or pa.types.is_binary(col.type):
        return pc.fill_null(pc.binary_length(col), 0).cast(pa.int64()), pa.nulls(n, pa.int64()).fill_null(0)
    if pa.types.is_list(col.type):
        items = pc.fill_null(pc.list_value_length(col), 0).cast(pa.int64())
        parents = pc.list_parent_indices(col)
        flat = pc.list_flatten(col)
        per_item = pa.nulls(len(flat), pa.int64()).fill_null(0)
        if pa.types.is_struct(flat.type):
            for child in flat.flatten():
                if pa.types.is_string(child.type):
                    per_item = pc.add(per_item, pc.fill_null(pc.binary_length(child), 0).cast(pa.int64()))
        sums = pa.table({"p": parents, "b": per_item}).group_by("p").aggregate([("b", "sum")])
        text: list[int | None] = [0] * n
        for p, b in zip(sums.column("p").to_pylist(), sums.column("b_sum").to_pylist()):
            if p is not None:  # a group key: a row's index, never null
                text[p] = b
        return pa.array(text, pa.int64()), items
    zeros = pa.nulls(n, pa.int64()).fill_null(0)
    return zeros, zeros


def check_sizes(t: "pa.Table", notes: list[str]) -> "pa.Table":
    """Rows with a field over MAX_FIELD_BYTES (or a list over MAX_LIST_ITEMS) are refused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in t.column_names:
        if not t.num_rows:
            break
        text, items = _row_bytes(t.column(name))
        ok = pc.and_(pc.less_equal(text, pa.scalar(MAX_FIELD_BYTES)), pc.less_equal(items, pa.scalar(MAX_LIST_ITEMS)))
        t = _keep(t, ok, f"{name} over {MAX_FIELD_BYTES} bytes or {MAX_LIST_ITEMS} items (keep fields small; "
                         "tracekit's own capture stays under max_field_chars)", notes)
    return t


def retag(t: "pa.Table", ids: RunIds) -> "pa.Table":
    import pyarrow as pa

    for col, value in (("experiment_id", ids.experiment_id), ("project", ids.project)):
        idx = t.schema.get_field_index(col)
        if idx >= 0:
            t = t.set_column(idx, t.schema.field(idx), pa.array([value] * t.num_rows, pa.string()))
    return t


def _unique(t: "pa.Table", keys: list[str], what: str, notes: list[str]) -> "pa.Table":
    import pyarrow as pa

    seen: set[tuple[Any, ...]] = set()
    mask = []
    for key in zip(*(t.column(k).to_pylist() for k in keys)):
        mask.append(key not in seen)
        seen.add(key)
    return _keep(t, pa.array(mask, pa.bool_()), f"the same {what} twice", notes)


def existing(store: "Store", table: str, column: str, values: set[str], extra: str | None = None) -> set[tuple[Any, ...]]:
    """(value[, extra]) pairs of `table` in the store whose `column` is in `values` (reads two columns only)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = store.files(table)
    if not values or not files:
        return set()
    cols = [column] + ([extra] if extra else [])
    found = ds.dataset([str(f) for f in files], format="parquet").to_table(
        columns=cols, filter=pc.field(column).isin(pa.array(sorted(values), pa.string())))
    return set(zip(*(found.column(c).to_pylist() for c in cols)))


def claimed_traces(store: "Store", ids: RunIds, trace_ids: set[str]) -> tuple[set[str], set[str]]:
    """(trace ids that belong to someone else, span ids the store holds in the run's own trace)."""
    rows = existing(store, "spans", "trace_id", trace_ids, "span_id")
    others = {tr for tr, _ in rows if tr != ids.trace_id}
    own = {sp for tr, sp in rows if tr == ids.trace_id}
    return others, own


def check_spans(t: "pa.Table", ids: RunIds, others: set[str], own: set[str], notes: list[str]) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pc.and_(pc.and_(_id_ok(t.column("trace_id"), TRACE_ID, nullable=False), _id_ok(t.column("span_id"), SPAN_ID, nullable=False)),
                 _id_ok(t.column("parent_span_id"), SPAN_ID, nullable=True))
    t = _keep(t, ok, "malformed trace_id / span_id / parent_span_id (32 / 16 lowercase hex digits)", notes)
    if ids.span_id:
        t = _keep(t, pc.not_equal(t.column("span_id"), pa.scalar(ids.span_id)), "span_id of the harness's own run span", notes)
    taken = pa.array(sorted(others), pa.string())
    t = _keep(t, pc.invert(pc.is_in(t.column("trace_id"), value_set=taken)),
              "trace_id of a trace the store already holds (another run's or experiment's)", notes)
    if ids.trace_id and own:
        mine = pc.equal(t.column("trace_id"), pa.scalar(ids.trace_id))
        reused = pc.is_in(t.column("span_id"), value_set=pa.array(sorted(own), pa.string()))
        t = _keep(t, pc.invert(pc.and_(mine, reused)), "span_id the store already holds in the run's trace", notes)
    return _unique(t, ["trace_id", "span_id"], "(trace_id, span_id)", notes)


def check_eval_runs(t: "pa.Table", store: "Store", notes: list[str]) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.compute as pc

    run_ids: set[str] = {r for r in t.column("run_id").to_pylist() if r is not None}  # required: never null
    taken = {r for (r,) in existing(store, "eval_runs", "run_id", run_ids)} | {
        r for (r,) in existing(store, "eval_results", "run_id", run_ids)}
    ok = pc.and_(pc.less_equal(pc.binary_length(t.column("run_id")), pa.scalar(200)),
                 pc.invert(pc.is_in(t.column("run_id"), value_set=pa.array(sorted(taken), pa.string()))))
    return _keep(t, ok, "eval run id the store already holds (or longer than 200 characters)", notes)


def check_eval_results(t: "pa.Table", ids: RunIds, started: set[str], others: set[str], notes: list[str]) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _keep(t, pc.is_in(t.column("run_id"), value_set=pa.array(sorted(started), pa.string())),
              "eval result of an eval run this run did not start (no eval_runs row of its own)", notes)
    ok = pc.and_(_id_ok(t.column("trace_id"), TRACE_ID, nullable=True), _id_ok(t.column("span_id"), SPAN_ID, nullable=True))
    t = _keep(t, ok, "malformed trace_id / span_id", notes)
    t = _keep(t, pc.invert(pc.is_in(t.column("trace_id"), value_set=pa.array(sorted(others), pa.string()))),
              "trace_id of a trace the store already holds (another run's or experiment's)", notes)
    return _unique(t, ["run_id", "case_id", "epoch"], "(run_id, case_id, epoch)", notes)
