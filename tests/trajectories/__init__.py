"""tracekit.trajectories: trajectories of traced agents, ATIF export and import."""
