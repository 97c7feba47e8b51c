"""tracekit's command line across commands: SQL and traces, text from a run shown inert."""
