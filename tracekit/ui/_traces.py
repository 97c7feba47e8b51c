"""The traces pages: a list with search, filters and keyset paging, and one trace's waterfall.

The list reads root spans (`parent_span_id IS NULL`), newest first, with `LIMIT`: DuckDB keeps the
top rows of one column scan instead of grouping every span into traces (the `traces` view does
that), which is what keeps a page fast on a store of millions of spans (bench/ui.py). Span and
error counts are then grouped for the page's traces only. A trace whose root span never arrived is
not listed (its spans are in SQL). Cost comes from the `llm_calls` view scoped to the page's traces
(`scoped_llm_calls`): the same numbers as everywhere, without pricing the whole store.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from ..store._llmviews import llm_calls_sql
from ._source import Reader

PAGE = 50
MAX_SPANS = 2000  # spans drawn on one trace page (the rest are in SQL)
PAGE_TEXT = 4_000_000  # characters of span text (inputs, outputs, attributes, messages) one trace page shows
COST_SCAN = 2000  # traces a cost filter prices, newest first (each needs the llm_calls view)
ROOT_COLUMNS = ("trace_id, span_id AS root_span_id, name, kind, service_name, project, experiment_id, start_time, "
                "duration_ms, status, input")
HEX32 = re.compile(r"[0-9a-f]{32}")
SKEW = dt.timedelta(minutes=10)  # how long before its root a span of the trace may start and still be counted in the list
WINDOW = object()  # a parameter `newest` fills in: the start of its time window, less SKEW
FACETS_S = 60.0  # the filter menus' values are read again after this many seconds


class BadInput(ValueError):
    """A filter or id the pages cannot use; the message says what to send instead."""


def scoped_llm_calls(where: str) -> str:
    """The `llm_calls` view's SQL over only the spans `where` selects (placeholders allowed)."""
    return f"WITH spans AS (SELECT * FROM main.spans WHERE {where}) SELECT * FROM ({llm_calls_sql()})"


@dataclass
class Filters:
    q: str = ""
    service: str = ""
    name: str = ""
    status: str = ""
    experiment: str = ""
    since: str = ""
    until: str = ""
    min_ms: str = ""
    max_ms: str = ""
    min_cost: str = ""
    cursor: str = ""

    @classmethod
    def from_query(cls, params: Any) -> "Filters":
        return cls(**{k: str(params.get(k) or "").strip()[:500] for k in cls.__dataclass_fields__})

    def query(self, **changes: str) -> str:
        from urllib.parse import urlencode

        values = {**self.__dict__, **changes}
        return urlencode({k: v for k, v in values.items() if v})

    def active(self) -> bool:
        return any(v for k, v in self.__dict__.items() if k != "cursor")


def _time(value: str, what: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{what} {value!r}: use a date and time like 2026-01-31T14:00 (UTC)") from None
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _float(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BadInput(f"{what} {value!r}: use a number") from None


def _cursor(at: dt.datetime, trace_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), trace_id]).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        at, tid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not HEX32.fullmatch(str(tid)):
            raise ValueError
        return dt.datetime.fromisoformat(at), str(tid)
    except (ValueError, TypeError):
        raise BadInput("that page link is not one this server made; start again from the first page") from None


def where_clause(f: Filters) -> tuple[list[str], list[Any]]:
    where = ["parent_span_id IS NULL"]
    params: list[Any] = []
    if f.q:
        like = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(trace_id = lower(?) OR name ILIKE ? ESCAPE '\\' OR input ILIKE ? ESCAPE '\\' OR output ILIKE ? ESCAPE '\\')")
        params += [f.q, like, like, like]
    for col, value in (("service_name", f.service), ("name", f.name)):
        if value:
            where.append(f"{col} = ?")
            params.append(value)
    if f.experiment:
        where.append("(experiment_id = ? OR starts_with(experiment_id, ?))")
        params += [f.experiment, f.experiment + "-"]
    if f.status in ("error", "ok"):  # any span of the trace failed; WINDOW: only spans in the window the roots are read from
        where.append(("" if f.status == "error" else "NOT ") + "trace_id IN (SELECT trace_id FROM spans WHERE status = 'error' AND start_time >= ?)")
        params.append(WINDOW)
    elif f.status:
        raise BadInput(f"status {f.status!r}: use ok or error")
    if f.since:
        where.append("start_time >= ?")
        params.append(_time(f.since, "since"))
    if f.until:
        where.append("start_time < ?")
        params.append(_time(f.until, "until"))
    if f.min_ms:
        where.append("duration_ms >= ?")
        params.append(_float(f.min_ms, "min duration"))
    if f.max_ms:
        where.append("duration_ms <= ?")
        params.append(_float(f.max_ms, "max duration"))
    return where, params


def list_traces(reader: Reader, f: Filters, page_size: int = PAGE) -> dict[str, Any]:
    """One page of traces (newest first) and the cursor of the next.

    Three light queries: the page's root spans by (start_time, trace_id) only, a top-N of one scan;
    then their other columns, and the span counts of their traces, both bounded by the page's start
    times, which the Parquet files' row-group statistics turn into reading a few row groups (spans
    are written in time order). Counts take spans starting up to SKEW before their root (clocks of
    other services), so a span that started earlier than that is not counted here (the trace page
    shows every span)."""
    where, params = where_clause(f)
    at = None
    if f.cursor:
        at, last = _uncursor(f.cursor)
        where.append("start_time <= ? AND (start_time < ? OR (start_time = ? AND trace_id < ?))")  # the first term prunes
        params += [at, at, at, last]
    min_cost = _float(f.min_cost, "min cost") if f.min_cost else None
    scanned = None
    if min_cost is None:
        keys = newest(reader, where, params, page_size + 1, at)
    else:  # price the newest COST_SCAN matching traces, keep those over the bar
        candidates = newest(reader, where, params, COST_SCAN, at)
        scanned = len(candidates)
        costs = _costs(reader, [r["trace_id"] for r in candidates], min((r["start_time"] for r in candidates), default=None))
        keys = [r for r in candidates if (costs.get(r["trace_id"], {}).get("cost_usd") or 0.0) >= min_cost][: page_size + 1]
    more = len(keys) > page_size
    keys = keys[:page_size]
    if not keys:
        return {"traces": [], "next_cursor": "", "cost_scanned": scanned}
    ids = [k["trace_id"] for k in keys]
    lo, hi = min(k["start_time"] for k in keys), max(k["start_time"] for k in keys)
    found = {(r["trace_id"], r["root_span_id"]): r for r in reader.rows(
        f"SELECT {ROOT_COLUMNS} FROM spans WHERE parent_span_id IS NULL AND start_time BETWEEN ? AND ? "
        "AND trace_id IN (SELECT unnest(?::VARCHAR[]))", [lo, hi, ids])}
    counts = {r["trace_id"]: r for r in reader.rows(
        "SELECT trace_id, count(*) AS span_count, count(*) FILTER (WHERE status = 'error') AS error_count, "
        "count(*) FILTER (WHERE kind = 'llm') AS llm_count, max(end_time) AS end_time "
        "FROM spans WHERE start_time >= ? AND trace_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY trace_id", [lo - SKEW, ids])}
    roots = []
    for k in keys:
        r = found.get((k["trace_id"], k["span_id"]))
        if r is None:  # a compaction between the two reads: the next page load has it
            continue
        c = counts.get(r["trace_id"], {})
        r.update(span_count=c.get("span_count", 1), error_count=c.get("error_count", 0), llm_count=c.get("llm_count", 0))
        if c.get("error_count"):
            r["status"] = "error"
        end = c.get("end_time")
        if end is not None and r["start_time"] is not None:
            r["duration_ms"] = max(r["duration_ms"] or 0.0, (end - r["start_time"]).total_seconds() * 1000)
        roots.append(r)
    next_cursor = _cursor(keys[-1]["start_time"], keys[-1]["trace_id"]) if more else ""
    return {"traces": roots, "next_cursor": next_cursor, "cost_scanned": scanned, "oldest": lo}


def newest(reader: Reader, where: list[str], params: list[Any], limit: int, before: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The newest `limit` root spans matching `where` (starting at or before `before`, the page
    cursor's time): (trace_id, span_id, start_time), newest first.

    Asked over a window of start times ending at the newest one (or `before`) that grows 16 times
    each try (a minute, 16 minutes, ~4 hours, ...) until it holds `limit` rows or covers the store:
    a window's bounds let the Parquet reader skip every row group outside it, where an unbounded
    top-N reads them all, so a page deep in the store costs what the first one does.
    """
    span = reader.one("SELECT min(start_time) AS lo, max(start_time) AS hi FROM spans")
    if span is None or span["hi"] is None:
        return []
    top = min(span["hi"], before) if before is not None else span["hi"]
    sql = f"SELECT trace_id, span_id, start_time FROM spans WHERE {' AND '.join(where)} AND start_time >= ? ORDER BY start_time DESC, trace_id DESC LIMIT ?"
    window = dt.timedelta(minutes=1)
    while True:
        since = top - window
        bound = [since - SKEW if p is WINDOW else p for p in params]
        rows = reader.rows(sql, bound + [since, limit])
        if len(rows) >= limit or since <= span["lo"]:
            return rows
        window *= 16


def _costs(reader: Reader, ids: list[str], since: dt.datetime | None = None) -> dict[str, dict[str, Any]]:
    """Cost, tokens and calls per trace from the `llm_calls` view over these traces' LLM spans (those
    starting at or after `since`, when given: the row groups before it are not read)."""
    if not ids:
        return {}
    where = "kind = 'llm' AND trace_id IN (SELECT unnest(?::VARCHAR[]))"
    params: list[Any] = [ids]
    if since is not None:
        where += " AND start_time >= ?"
        params.append(since)
    sql = ("SELECT trace_id, sum(cost_usd) AS cost_usd, sum(total_tokens) AS tokens, count(*) AS calls FROM ("
           + scoped_llm_calls(where) + ") GROUP BY trace_id")
    return {r["trace_id"]: r for r in reader.rows(sql, params)}


def trace_costs(reader: Reader, ids: list[str], since: str = "") -> dict[str, dict[str, Any]]:
    """Cost, tokens and LLM calls of each listed trace (the list loads them after the page; `since` is
    the page's oldest start, so only the newer row groups are read)."""
    start = _time(since, "since") - SKEW if since else None
    return _costs(reader, [i for i in ids if HEX32.fullmatch(i)][:PAGE], start)


_facets: dict[int, tuple[float, dict[str, list[str]]]] = {}


def facets(reader: Reader, key: int = 0) -> dict[str, list[str]]:
    """Values for the filter menus: services and root span names (the most common 200), read at most
    once a FACETS_S seconds per source (`key`): two scans of every root span are not worth a page view."""
    import time

    cached = _facets.get(key)
    if cached is not None and time.monotonic() - cached[0] < FACETS_S:
        return cached[1]
    out: dict[str, list[str]] = {}
    for name, col in (("services", "service_name"), ("names", "name")):
        rows = reader.rows(f"SELECT {col} AS v FROM spans WHERE parent_span_id IS NULL AND {col} IS NOT NULL "
                           f"GROUP BY {col} ORDER BY count(*) DESC LIMIT 200")
        out[name] = sorted(str(r["v"]) for r in rows)
    _facets[key] = (time.monotonic(), out)
    return out


def check_trace_id(trace_id: str) -> str:
    tid = trace_id.lower()
    if not HEX32.fullmatch(tid):
        raise BadInput(f"trace id {trace_id[:64]!r}: use 32 hex digits")
    return tid


def load_trace(reader: Reader, trace_id: str) -> dict[str, Any] | None:
    """The trace's spans in tree order with depth and waterfall offsets, and its LLM calls by span."""
    tid = check_trace_id(trace_id)
    spans = reader.rows("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_time, span_id", [tid], limit=MAX_SPANS + 1)
    if not spans:
        return None
    cut = len(spans) > MAX_SPANS
    spans = spans[:MAX_SPANS]
    llm = [s["start_time"] for s in spans if s["kind"] == "llm"]
    calls = {c["span_id"]: c for c in reader.rows(  # bounded by their start times: a few row groups read, not the store
        scoped_llm_calls("trace_id = ? AND kind = 'llm' AND start_time BETWEEN ? AND ?"), [tid, min(llm), max(llm)])} if llm else {}
    ordered = tree_order(spans)
    t0 = min(s["start_time"] for s in spans)
    t1 = max(s["end_time"] for s in spans)
    total = max((t1 - t0).total_seconds() * 1000, 1e-3)
    budget = PAGE_TEXT
    for s in ordered:
        s["offset_pct"] = 100 * (s["start_time"] - t0).total_seconds() * 1000 / total
        s["width_pct"] = max(100 * (s["duration_ms"] or 0.0) / total, 0.3)
        s["exceptions"] = [e for e in (s.get("events") or []) if e.get("name") == "exception"]
        s["llm"] = calls.get(s["span_id"])
        size = sum(len(str(s.get(k) or "")) for k in ("input", "output", "attributes"))
        size += sum(len(str(s["llm"].get(k) or "")) for k in ("input_messages", "output_messages")) if s["llm"] else 0
        budget -= size
        s["omitted"] = budget < 0 and size > 1000  # past the page's budget: the span's text stays in SQL
        if s["omitted"]:
            s["input"] = s["output"] = s["attributes"] = s["llm"] = None
    cost = sum((c.get("cost_usd") or 0.0) for c in calls.values())
    tokens = sum((c.get("total_tokens") or 0) for c in calls.values())
    summary = {"trace_id": tid, "start_time": t0, "duration_ms": total, "span_count": len(spans), "cut": cut,
               "errors": sum(1 for s in spans if s["status"] == "error"), "cost_usd": cost if calls else None,
               "tokens": tokens if calls else None, "llm_calls": len(calls), "root": ordered[0],
               "experiment_id": next((s["experiment_id"] for s in spans if s.get("experiment_id")), None)}
    return {"summary": summary, "spans": ordered}


def tree_order(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Depth-first by start time; a span whose parent is not in the trace is a root. Sets `depth`."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(s)
    out: list[dict[str, Any]] = []
    stack = [(s, 0) for s in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # a hostile cycle or duplicate id: each span once
            continue
        seen.add(span["span_id"])
        span["depth"] = min(depth, 40)
        out.append(span)
        stack.extend((c, depth + 1) for c in reversed(children.get(span["span_id"], [])))
    for s in spans:  # spans in a cycle (no root above them): shown flat, once
        if s["span_id"] not in seen:
            seen.add(s["span_id"])
            s["depth"] = 0
            out.append(s)
    return out
