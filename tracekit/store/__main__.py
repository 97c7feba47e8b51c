"""Regenerate the files derived from the table declarations (a test fails when they drift).

    python -m tracekit.store schemas docs/tables.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import _docgen, _tables


def main(argv: list[str]) -> int:
    schemas = Path(argv[0] if argv else "schemas")
    doc = Path(argv[1] if len(argv) > 1 else "docs/tables.md")
    schemas.mkdir(parents=True, exist_ok=True)
    for path, text in _tables.render(schemas).items():
        path.write_text(text)
        print(f"wrote {path}")
    doc.write_text(_docgen.render())
    print(f"wrote {doc}")
    return 0


sys.exit(main(sys.argv[1:]))
