"""Templates and the filters they use. Everything a page shows came from a run, so it is text:

- Jinja2 autoescape is on for every template; no template marks data `|safe`, no code builds
  `Markup` from data (tests/ui/test_pages_http.py checks both);
- chart data goes into `<script type="application/json">` through `|tojson`, which escapes `<`, `>`,
  `&` and quotes, so a `</script>` in a rationale cannot end the block; the page's own script
  (static/app.js) reads it with JSON.parse;
- long text is cut server-side (`clip`) with a note, so one huge output cannot make a page huge.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .._util.jsonutil import loads_limited

TEMPLATES = Path(__file__).with_name("templates")
TEXT_CAP = 64 * 1024  # characters of one field shown on a page (the SQL console and downloads have it all)


def duration(ms: Any) -> str:
    if ms is None:
        return ""
    ms = float(ms)
    if not math.isfinite(ms):
        return ""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.1f} min"


def when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return "" if value is None else str(value)


def number(value: Any, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def usd(value: Any) -> str:
    if value is None:
        return ""
    v = float(value)
    return f"${v:.4f}" if v < 1 else f"${v:.2f}"


def clip(text: Any, cap: int = TEXT_CAP, where: str = "the SQL console") -> str:
    """At most `cap` characters, with a note of how many were left out and `where` the whole value is."""
    s = "" if text is None else str(text)  # plain str, never Markup: autoescape applies to the result
    if len(s) <= cap:
        return s
    return s[:cap] + f"\n... [{len(s) - cap} more characters: {where} has the whole value]"


def cell(value: Any, cap: int = 2000) -> str:
    """One SQL result value as text: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    text = when(value) if isinstance(value, dt.datetime) else value if isinstance(value, str) else \
        json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    return clip(text, cap, "the CSV or Parquet download")


def pretty(text: Any, cap: int = TEXT_CAP) -> str:
    """JSON text indented (a JSON string shown as its text); anything else as it is, clipped."""
    if text is None:
        return ""
    if not isinstance(text, str):
        return clip(json.dumps(text, indent=2, ensure_ascii=False, default=str), cap)
    try:
        value = loads_limited(text, max_bytes=4 * cap)
    except ValueError:
        return clip(text, cap)
    if isinstance(value, str):
        return clip(value, cap)
    return clip(json.dumps(value, indent=2, ensure_ascii=False), cap)


def parse(text: Any) -> Any:
    """JSON text to a value for a template to walk (None when it is not JSON)."""
    if text is None or not isinstance(text, (str, bytes)):
        return text
    try:
        return loads_limited(text, max_bytes=4 * 1024 * 1024)
    except ValueError:
        return None


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=duration, when=when, number=number, usd=usd, clip=clip, pretty=pretty, parse=parse, cell=cell)
    return env


ENV = _env()


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A whole page (or, for an htmx request of a fragment template, the fragment)."""
    session = bool(getattr(request.state, "session", False))
    writes = getattr(request.state, "writes", None) or {"csrf": "", "why": "these pages are read-only"}  # set by PageGuard
    return HTMLResponse(render(name, path=request.url.path, session=session, writes=writes, **context), status_code=status)


def login_page(target: str, message: str, status: int) -> bytes:
    return render("login.html", path="/ui/login", session=False, writes={"csrf": "", "why": ""}, target=target, message=message, status=status).encode()
