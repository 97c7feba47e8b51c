"""tracekit.evals: datasets, scorers, the runner, the judge, command tasks in the sandbox, the CLI."""
