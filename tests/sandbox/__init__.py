"""tracekit.sandbox: runs under a budget, isolation, faults, metrics, traces, what a run brings home."""
