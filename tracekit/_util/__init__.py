"""Small helpers every layer may use; they import nothing else of tracekit but `_errors`.

- `jsonutil`: JSON for stored values (capped, NaN-safe) and a loader with depth and size limits
  for everything untrusted.
- `fsio`: durable writes (fsync, atomic rename).
- `saferead`: reading what a run or a client left, relative to a directory descriptor, never
  following a link, within a size cap.
- `termtext`: text for the terminal: control characters made visible, Rich markup escaped.
- `landlock`: the Landlock system calls (the collector's SQL workers make themselves read-only).
"""

from __future__ import annotations

__all__: list[str] = []
