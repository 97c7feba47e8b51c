"""tracekit.optimizer: the loop, proposers, resume after SIGKILL, the paths it may write, the CLI."""
