"""The `tracekit` command: one typer group, one module per noun (see main.py)."""
