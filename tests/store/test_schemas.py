"""The table declarations are the source of truth: schemas/ and docs/tables.md are generated from them and must match."""

from __future__ import annotations

from tests._support import DOCS, ROOT


def test_schemas_folder_matches_code() -> None:
    from tracekit.store._tables import render

    root = ROOT / "schemas"
    expected = render(root)
    for path, text in expected.items():
        assert path.exists(), f"{path.name} missing: run python -m tracekit.store schemas docs/tables.md"
        assert path.read_text() == text, f"{path.name} drifted from the code: run python -m tracekit.store schemas docs/tables.md"
    extra = {p.name for p in root.iterdir()} - {p.name for p in expected}
    assert not extra, f"stale files in schemas/: {extra}"


def test_tables_doc_matches_code() -> None:
    from tracekit.store._docgen import render

    doc = DOCS / "tables.md"
    assert doc.read_text() == render(), "docs/tables.md drifted: run python -m tracekit.store schemas docs/tables.md"
