"""tracekit's test suite: one folder per package (see tests/conftest.py for the shared fixtures, tests/_support/ for helpers)."""
