"""The `anthropic` SDK's calls as spans: `messages.create` (streaming or not) and `messages.stream`.

`_instrument` wraps the SDK (with `wrapt`, results and exceptions unchanged), `_call` records one
call's span, `_content` turns request and response content blocks into the stored JSON, and
`_streams` follows a stream to its end (or its abandonment).
"""

from __future__ import annotations

__all__: list[str] = []
