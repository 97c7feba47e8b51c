"""What a run brings home: its spans and eval rows from the spool and the OTLP folder, as hostile input.

The run's `io/` folder is whatever the candidate left there (on the local backend it is even the
live folder it wrote). So:

- only the tables in `ALLOWED_TABLES` are read (`spans`, `eval_results`, `eval_runs`): never
  `experiments` (the optimizer's ledger), never a table registered later unless it is added here;
- every folder and file is opened relative to a descriptor without following symlinks, FIFOs and
  devices are never opened, sizes are checked before reading (`tracekit._util.saferead`);
- rows and decoded bytes are capped before anything is decoded in full: `MAX_ROWS` rows over all
  tables and `max_bytes` (the spec's `trace_bytes`) decoded bytes, Parquet through
  `tracekit.store._capped_parquet`, OTLP bodies by their decompressed size, span count and converted
  size (OTLP/JSON bodies at most `MAX_JSON_BODY`: parsed JSON costs ~20x its text);
- rows are validated and re-tagged by `_rowcheck` before they are written.

Whatever goes wrong becomes a note in `problems`; nothing raises out of `ingest` for bad input.
"""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import CollectorError, StoreError
from .._util.saferead import SafeDir, UnsafePath, kind_of
from ..store._capped_parquet import Budget, read_capped
from . import _rowcheck

if TYPE_CHECKING:
    import pyarrow as pa

ALLOWED_TABLES = ("eval_runs", "eval_results", "spans")  # eval rows, OTLP spans, spool spans share the caps
MAX_ROWS = 200_000
MAX_JSON_BODY = 8 << 20
MAX_FILES = 10_000  # per folder: each file costs a read and a parse, so 300k empty files cost seconds each
OTLP_CHUNK = 4096  # spans converted at once (their Python rows are the costly part)
_run_span = threading.local()  # (trace_id, span_id) of the run span started last on this thread


def remember_run_span(trace_id: str, span_id: str) -> None:
    """Called by `RunSpan`: `ingest` on the same thread uses it when not given the run span's ids."""
    _run_span.ids = (trace_id, span_id)


def ingest(io_dir: Path, home: Path, experiment_id: str, max_bytes: int, *, run_trace_id: str | None = None,
           run_span_id: str | None = None, project: str | None = None, max_rows: int = MAX_ROWS) -> tuple[int, list[str]]:
    """Bring the run's spans and eval rows from `io_dir` into the store at `home`; (span rows stored, problems)."""
    import pyarrow as pa

    from .._config import get_settings
    from ..store._store import Store
    from ..store._tables import get_table

    remembered = _run_span.__dict__.pop("ids", (None, None))  # used once: never a later run's by mistake
    if run_trace_id is None and run_span_id is None:
        run_trace_id, run_span_id = remembered
    ids = _rowcheck.RunIds(experiment_id, project or get_settings().project, run_trace_id, run_span_id)
    problems: list[str] = []
    budget = Budget(rows=max_rows, bytes=max_bytes)
    parts: dict[str, list[pa.Table]] = {name: [] for name in ALLOWED_TABLES}
    try:
        io = SafeDir.open(io_dir, label="io")
    except FileNotFoundError:
        return 0, []
    except (OSError, UnsafePath) as exc:
        return 0, [f"{exc}; nothing the run left was read"]
    with io:
        _read_spool(io, budget, parts, problems, ("eval_runs", "eval_results"), note_others=True)
        _read_otlp(io, budget, parts["spans"], ids.project, problems)  # before spool spans, as they were read before
        _read_spool(io, budget, parts, problems, ("spans",))
    tables = {name: (pa.concat_tables(p) if p else get_table(name).arrow_schema().empty_table()) for name, p in parts.items()}
    store = Store(home)
    checked = _check(store, tables, ids, problems)
    for name in ALLOWED_TABLES:
        if checked[name].num_rows:
            store.write(name, checked[name], durable=True)
    return checked["spans"].num_rows, problems


def _check(store: Any, tables: dict[str, "pa.Table"], ids: _rowcheck.RunIds, problems: list[str]) -> dict[str, "pa.Table"]:
    import pyarrow.compute as pc

    out = {name: _rowcheck.retag(_rowcheck.check_sizes(t, problems), ids) for name, t in tables.items()}
    out["eval_runs"] = _rowcheck.check_eval_runs(out["eval_runs"], store, problems)
    started: set[str] = {r for r in out["eval_runs"].column("run_id").to_pylist() if r is not None}  # required: never null
    trace_ids: set[str] = {t for t in pc.unique(out["spans"].column("trace_id")).to_pylist() if t is not None}
    trace_ids |= {t for t in pc.unique(out["eval_results"].column("trace_id")).to_pylist() if t}
    others, own = _rowcheck.claimed_traces(store, ids, trace_ids)
    out["spans"] = _rowcheck.check_spans(out["spans"], ids, others, own, problems)
    out["eval_results"] = _rowcheck.check_eval_results(out["eval_results"], ids, started, others, problems)
    return out


def _folder(parent: SafeDir, name: str, problems: list[str]) -> SafeDir | None:
    try:
        return parent.sub(name)
    except FileNotFoundError:
        return None
    except (OSError, UnsafePath) as exc:
        problems.append(f"{exc}; nothing in it was read")
        return None


def _files(folder: SafeDir, problems: list[str]) -> list[str]:
    """Names of the regular files in `folder` (dot-files skipped, at most MAX_FILES); anything else is noted and skipped."""
    names = [n for n in folder.names() if not n.startswith(".")]
    if len(names) > MAX_FILES:
        problems.append(f"{folder.label}: {len(names)} files; only the first {MAX_FILES} were read")
        names = names[:MAX_FILES]
    out = []
    for name, st in folder.entries(names):
        if name.startswith("."):
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(name)
        else:
            problems.append(f"{folder.label}/{name} is {kind_of(st.st_mode)}, not a regular file; ignored")
    return out


def _read_spool(io: SafeDir, budget: Budget, parts: dict[str, list["pa.Table"]], problems: list[str],
                tables: tuple[str, ...], *, note_others: bool = False) -> None:
    """Parquet files of `tables` (all in ALLOWED_TABLES) from the spool; with `note_others`, say what is left behind."""
    from ..store._tables import get_table

    spool = _folder(io, "spool", problems if note_others else [])
    if spool is None:
        return
    with spool:
        other = [name for name in spool.names() if name not in ALLOWED_TABLES and not name.startswith(".")]
        for name in other[:20] if note_others else ():
            problems.append(f"{spool.label}/{name}: not brought home (a run may only add {', '.join(ALLOWED_TABLES)} rows)")
        if note_others and len(other) > 20:
            problems.append(f"{spool.label}: {len(other) - 20} more entries not brought home")
        for table in tables:
            folder = _folder(spool, table, problems)
            if folder is None:
                continue
            with folder:
                for name in _files(folder, problems):
                    if not name.endswith(".parquet"):
                        continue
                    label = f"{folder.label}/{name}"
                    try:
                        data = folder.read(name, max(budget.bytes, 0))
                        rows, notes = read_capped(get_table(table), data, budget, label)
                    except (OSError, UnsafePath, StoreError) as exc:  # report, keep the rest
                        problems.append(f"{label}: {exc}" if not str(exc).startswith(label) else str(exc))
                        continue
                    problems.extend(notes)
                    if rows.num_rows:
                        parts[table].append(rows)


def _read_otlp(io: SafeDir, budget: Budget, parts: list["pa.Table"], project: str, problems: list[str]) -> None:
    """OTLP bodies the run's receiver stored (`<n>.pb`, `<n>.json`, `.gz` when compressed), decoded by the collector's code."""
    from ..store import _otlp

    folder = _folder(io, "otlp", problems)
    if folder is None:
        return
    with folder:
        for name in _files(folder, problems):
            label = f"{folder.label}/{name}"
            is_json, gz = ".json" in name, name.endswith(".gz")
            limit = max(min(budget.bytes, MAX_JSON_BODY if is_json else budget.bytes), 0)
            try:
                raw = folder.read(name, limit if not gz else max(budget.bytes, 0))
                body = _otlp.decompress(raw, "gzip" if gz else "", limit)
                del raw
                request = _otlp.parse(body, _otlp.JSON if is_json else _otlp.PROTOBUF)
                del body
                _convert(request, label, budget, parts, project, problems)
            except (OSError, UnsafePath, CollectorError) as exc:  # MalformedRequest / BodyTooLarge: report, keep the rest
                problems.append(f"{label}: {exc}")
            except Exception as exc:  # a body the converter chokes on is still just a bad body
                problems.append(f"{label}: could not be converted ({type(exc).__name__}: {exc})")


def _convert(request: Any, label: str, budget: Budget, parts: list["pa.Table"], project: str, problems: list[str]) -> None:
    """Spans of `request`, OTLP_CHUNK at a time, within the row and byte budget."""
    from ..store import _otlp
    from ..store._rows import spans_table

    total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if total > budget.rows:
        problems.append(f"{label}: {total} spans; only the first {max(budget.rows, 0)} fit the row cap")
    rejected, reason = 0, ""
    for sub in _chunks(request, OTLP_CHUNK):
        if budget.rows <= 0:
            return
        rows, bad, why = _otlp.raw_spans(sub, project)
        rejected, reason = rejected + bad, reason or why
        wanted = rows[:budget.rows]
        fits, size = 0, 0
        for row in wanted:
            cost = _row_size(row)
            if size + cost > budget.bytes:
                break
            fits, size = fits + 1, size + cost
        if fits:
            parts.append(spans_table(rows[:fits]))
        budget.rows -= fits
        budget.bytes -= size
        if fits < len(wanted):  # the byte budget ran out before the row cap did
            problems.append(f"{label}: stopped; its spans decode past the trace budget (raise trace_bytes, or emit smaller spans)")
            return
    if rejected:
        problems.append(f"{label}: {rejected} span(s) rejected; first: {reason}")


def _chunks(request: Any, size: int) -> Any:
    """Requests of at most `size` spans each, together holding every span of `request`."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for start in range(0, len(ss.spans), size):
                sub = ExportTraceServiceRequest()
                srs = sub.resource_spans.add()
                srs.resource.CopyFrom(rs.resource)
                sss = srs.scope_spans.add()
                sss.scope.CopyFrom(ss.scope)
                sss.spans.extend(ss.spans[start:start + size])
                yield sub


def _row_size(row: dict[str, Any]) -> int:
    """Roughly what a row costs in Arrow: its text plus 8 bytes per other value."""
    n = 0
    for v in row.values():
        if isinstance(v, str):
            n += len(v)
        elif isinstance(v, list):
            n += sum(len(x) if isinstance(x, str) else 8 for item in v for x in (item.values() if isinstance(item, dict) else item))
        else:
            n += 8
    return n
