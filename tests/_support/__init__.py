"""Helpers the test folders share, imported as `tests._support.<module>` (pytest puts the repository on the path).

- `anthropic_api`: SDK clients for the local Messages API server, rows of a query as dicts.
- `messages_server`: a real HTTP server on 127.0.0.1 speaking the Anthropic Messages API.
- `harness_sim`: scripted task and meta models for the examples/agent-harness loop.
- `collector`: real OTel spans, OTLP bodies, a collector on a thread or as `tracekit serve`.
- `sandbox`: candidates as Python snippets with a marker, and the check that nothing is left.
- `spool`: forged spool rows and hostile Parquet files, an ingest measured in its own process.
- `optimizer`: small real targets, a scripted proposer, git checks of a run's branch.
- `examples`: modules of the examples/ folders, imported by file path.
- `docblocks`, `docrun`, `docs_page`: the fenced blocks of README.md and docs/, a page's folder and
  environment, and the runner that executes a page as written (tests/docs/).

Fixtures live in the conftest.py of the folder that uses them (tests/conftest.py when several do).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/, examples/, schemas/, pyproject.toml
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

__all__ = ["DOCS", "EXAMPLES", "ROOT"]
