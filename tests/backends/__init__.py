"""tracekit.backends: the public backend API, and GEPA, OpenEvolve and DSPy run on it with their real packages."""
