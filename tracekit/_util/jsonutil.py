"""JSON for captured inputs and outputs: never raises, stays valid JSON under a size cap.

`dumps_capped(obj, cap)` serialises anything: dataclasses, pydantic models, sets, bytes, enums,
paths and arbitrary objects (as their repr). When the text is over `cap` characters, long strings
and lists inside the value are shortened (with a marker saying how much was cut) until it fits, so
the stored text is still JSON that `json_extract` can read.

`loads_limited(text)` is the other direction for JSON someone else wrote (a run's result file, a
command's output, an OTLP/JSON body, span text): a depth or size bomb becomes `JSONLimitError`, a
`ValueError` like any other bad JSON, instead of a `RecursionError` (or a value so deep that the
next recursive walk over it fails) escaping from wherever it was read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

_SCRUB_KEYS = re.compile(
    r"(api[-_]?key|apikey|password|passwd|secret|token|authorization|auth[-_]?header|cookie|session[-_]?key|private[-_]?key|credit[-_]?card)",
    re.IGNORECASE,
)
_SCRUB_HINT = re.compile(r"key|pass|secret|token|auth|cookie|session|card")
REDACTED = "[REDACTED]"


def _may_hold_secret(text: str) -> bool:
    return _SCRUB_HINT.search(text.lower()) is not None and _SCRUB_KEYS.search(text) is not None


MAX_DEPTH = 12
MAX_PARSE_DEPTH = 100  # protobuf's own nesting limit; far below the interpreter's recursion limit


class JSONLimitError(ValueError):
    """JSON refused as a bomb: larger than its cap or nested deeper than `MAX_PARSE_DEPTH`."""


def loads_limited(text: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_PARSE_DEPTH) -> Any:
    """`json.loads` for untrusted text: ValueError (JSONLimitError for a bomb) is the only way it fails."""
    if max_bytes is not None and len(text) > max_bytes:
        raise JSONLimitError(f"JSON text of {len(text)} bytes is over the limit of {max_bytes} bytes")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONLimitError(f"JSON is nested deeper than {max_depth} levels") from None
    _check_depth(text, value, max_depth)
    return value


def raw_decode_limited(text: str, *, max_depth: int = MAX_PARSE_DEPTH) -> Any:
    """The first JSON value at the start of `text` (prose may follow), with `loads_limited`'s limits."""
    try:
        value = json.JSONDecoder().raw_decode(text)[0]
    except RecursionError:
        raise JSONLimitError(f"JSON is nested deeper than {max_depth} levels") from None
    _check_depth(text, value, max_depth)
    return value


def _check_depth(text: str | bytes, value: Any, max_depth: int) -> None:
    opening = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    if opening <= max_depth:  # cannot be deeper than its brackets: the common case skips the walk
        return
    stack = [(value, 1)]
    while stack:  # iterative, so checking a deep value cannot itself run out of stack
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > max_depth:
                    raise JSONLimitError(f"JSON is nested deeper than {max_depth} levels")
                stack.append((child, depth + 1))


def to_jsonable(obj: Any, *, scrub: bool = True, _depth: int = 0) -> Any:
    """A structure of dict/list/str/int/float/bool/None that json.dumps accepts."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if _depth >= MAX_DEPTH:
        return _short_repr(obj)
    d = _depth + 1
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = k if isinstance(k, str) else str(k)
            out[key] = REDACTED if scrub and _SCRUB_KEYS.search(key) and v is not None else to_jsonable(v, scrub=scrub, _depth=d)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v, scrub=scrub, _depth=d) for v in items]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<bytes len={len(obj)}>"
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, scrub=scrub, _depth=d)
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, scrub=scrub, _depth=d)
    dump = getattr(obj, "model_dump", None)  # pydantic v2 (and the anthropic SDK's types)
    if callable(dump) and not isinstance(obj, type):
        try:
            return to_jsonable(dump(), scrub=scrub, _depth=d)
        except Exception:
            pass
    isoformat = getattr(obj, "isoformat", None)  # datetime, date, time
    if callable(isoformat) and not isinstance(obj, type):
        try:
            return str(isoformat())
        except Exception:
            pass
    return _short_repr(obj)


def _short_repr(obj: Any, limit: int = 200) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__qualname__} (repr failed)>"
    return text if len(text) <= limit else text[:limit] + "…"


def _shrink(value: Any, max_str: int, max_items: int) -> Any:
    if isinstance(value, str):
        if len(value) > max_str:
            return value[:max_str] + f"…[+{len(value) - max_str} chars]"
        return value
    if isinstance(value, list):
        head = [_shrink(v, max_str, max_items) for v in value[:max_items]]
        if len(value) > max_items:
            head.append(f"…[+{len(value) - max_items} items]")
        return head
    if isinstance(value, dict):
        items = list(value.items())
        out = {k: _shrink(v, max_str, max_items) for k, v in items[:max_items]}
        if len(items) > max_items:
            out["…"] = f"[+{len(items) - max_items} keys]"
        return out
    return value


def sql_scalar(value: Any) -> Any:
    """A SQL value JSON has no type for: date/time as ISO 8601, interval as seconds, decimal as float; else `value`."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _fallback(obj: Any) -> Any:
    return to_jsonable(obj, scrub=False)


_FAST_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_fallback, allow_nan=False)


def _c_encoder() -> Callable[[Any], str]:
    """The C encoder built once (JSONEncoder.encode builds one per call); no cycle markers, so it is
    stateless and thread-safe: a cycle ends in RecursionError, which sends the value to the full walk.
    Without the C accelerator (or with another signature): the pure-Python encoder."""
    make = getattr(json.encoder, "c_make_encoder", None)  # None without _json; typeshed does not declare it
    if make is None:
        return _FAST_ENCODER.encode
    try:
        encode = make(None, _fallback, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    except TypeError:
        return _FAST_ENCODER.encode

    def fast_encode(obj: Any) -> str:
        return "".join(encode(obj, 0))

    return fast_encode


_fast_encode = _c_encoder()


def dumps_capped(obj: Any, cap: int = 65536, *, scrub: bool = True, already_jsonable: bool = False) -> str:
    """Serialise `obj` to JSON text of at most about `cap` characters (always valid JSON).

    Fast path: one `json.dumps` with a fallback for foreign types; the full walk (scrubbing secret
    keys, NaN, cycles, shortening) runs only when the text needs it.
    """
    text: str | None
    try:
        text = _fast_encode(obj)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None and len(text) <= cap and not (scrub and _may_hold_secret(text)):
        return text
    value = obj if already_jsonable else to_jsonable(obj, scrub=scrub)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= cap:
        return text
    max_str, max_items = max(cap // 4, 16), 256
    while max_str > 16 or max_items > 4:
        text = json.dumps(_shrink(value, max_str, max_items), ensure_ascii=False, separators=(",", ":"))
        if len(text) <= cap:
            return text
        max_str, max_items = max(max_str // 2, 16), max(max_items // 2, 4)
    preview = json.dumps(value, ensure_ascii=False)[: max(cap - 120, 16)]
    return json.dumps({"_truncated": True, "size": len(json.dumps(value)), "preview": preview}, ensure_ascii=False)
