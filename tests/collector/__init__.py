"""tracekit.collector: OTLP ingest, the read API, durability, and the collector under attack."""
