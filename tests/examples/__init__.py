"""The examples/ folders (agent, agent-harness, tinylm) run as the tests' subjects."""
