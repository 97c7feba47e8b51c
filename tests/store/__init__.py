"""tracekit.store: the Parquet store, its tables, schemas and their docs."""
