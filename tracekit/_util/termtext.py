"""Hostile text made safe for a terminal and for files humans open: one sanitiser for every printer.

Almost everything the CLI prints was written by someone else: span names, inputs and attributes
(any OTLP client can send them), a candidate's stdout and its metric names, a proposer's rationale,
eval case outputs, error strings quoting bad input. Written raw, an ESC or CSI sequence repaints
the operator's screen, OSC 52 writes their clipboard, OSC 8 plants links, OSC 0 retitles the
window, a carriage return or backspace overwrites what was printed, and bidi overrides make text
read differently from what it is. Rich adds its own hazard: `[...]` is markup to it (a stray
`[/red]` raises MarkupError, `[link=...]` is a hyperlink).

- `clean(text)`: every C0/C1 control (ESC, CSI U+009B, OSC U+009D, BEL, BS, CR, DEL, ...), bidi
  control, line/paragraph separator and lone surrogate becomes a visible placeholder (`␛`,
  `⟨U+009B⟩`); `\\n` and `\\t` stay unless `newlines=False` / `tabs=False`; `\\r\\n` becomes `\\n`.
- `markup(text)`: `clean`, then escaped for Rich markup (for strings printed with markup on).
- `json_text(obj)`: JSON with those characters as `\\uXXXX` escapes: still valid JSON, lossless.

    console.print(f"[red]error:[/red] {markup(message)}")
    sys.stdout.write(clean(log_tail) + "\\n")
"""

from __future__ import annotations

import json
from typing import Any

BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
_UNSAFE = (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *BIDI, 0x2028, 0x2029, *range(0xD800, 0xE000))


def _placeholder(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ ␇ ␈ ␍ ...
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"⟨U+{code:04X}⟩"


_TABLE = {c: _placeholder(c) for c in _UNSAFE}
_TABLE_NL = {c: p for c, p in _TABLE.items() if c != 0x0A}
_TABLE_TAB = {c: p for c, p in _TABLE.items() if c != 0x09}
_TABLE_NL_TAB = {c: p for c, p in _TABLE_NL.items() if c != 0x09}
_JSON_TABLE = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x7F}  # json.dumps escapes C0 itself


def clean(text: Any, *, newlines: bool = True, tabs: bool = True) -> str:
    """`text` with every terminal-controlling character replaced by a visible placeholder."""
    s = text if isinstance(text, str) else str(text)
    if newlines:
        s = s.replace("\r\n", "\n")
    table = (_TABLE_NL_TAB if tabs else _TABLE_NL) if newlines else (_TABLE_TAB if tabs else _TABLE)
    return s.translate(table)


def markup(text: Any, *, newlines: bool = True) -> str:
    """`clean(text)` escaped so Rich prints it literally inside a markup string."""
    from rich.markup import escape

    return escape(clean(text, newlines=newlines))


def json_text(obj: Any, **kwargs: Any) -> str:
    """`json.dumps(obj, ensure_ascii=False, **kwargs)` with no raw control, bidi or surrogate character left."""
    return json.dumps(obj, ensure_ascii=False, **kwargs).translate(_JSON_TABLE)
