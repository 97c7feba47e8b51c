"""tracekit.llm: the anthropic instrumentation, and the llm_calls / tool_calls views over every dialect."""
