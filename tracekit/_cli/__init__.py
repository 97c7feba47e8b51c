"""The `tracekit` command: one typer group, one module per noun (see main.py)."""

__all__: list[str] = []
