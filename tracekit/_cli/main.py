"""The `tracekit` command. Each noun lives in its own module exposing `register(app)`.

    tracekit sql "SELECT name, count(*) FROM spans GROUP BY 1"
    tracekit traces list
    tracekit --help
"""

from __future__ import annotations

import importlib
import sys

import typer

from .._errors import TracekitError

app = typer.Typer(
    name="tracekit",
    help="Traces of agent runs in Parquet, SQL through DuckDB, a sandbox, evals and a trace-fed optimizer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One module per noun, each with register(app). Keep sorted.
COMMANDS = [
    "tracekit._cli.demo",
    "tracekit._cli.eval",
    "tracekit._cli.optimize",
    "tracekit._cli.sandbox",
    "tracekit._cli.serve",
    "tracekit._cli.sql",
    "tracekit._cli.store",
    "tracekit._cli.traces",
    "tracekit._cli.trajectory",
    "tracekit._cli.ui",
]

for _mod in COMMANDS:
    importlib.import_module(_mod).register(app)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"tracekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version, expose_value=True)) -> None:
    """Traces of agent runs in Parquet, SQL through DuckDB, a sandbox, evals and a trace-fed optimizer."""


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Click's exception base, and typer's (typer >= 0.25 vendors click: its usage errors are not click's)."""
    out: list[type[BaseException]] = [t for t in (getattr(typer, "TyperException", None),) if t is not None]
    try:
        import click

        out.append(click.ClickException)
    except ImportError:
        pass
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected errors print one clear message (no traceback) and exit 2."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except TracekitError as exc:
        from ._common import say

        say("error: " + str(exc), err=True)  # messages quote bad input: control characters made visible
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # usage errors (click's, or the click typer vendors)
        if isinstance(exc, _usage_errors()):
            import io

            from .._util.termtext import clean

            buf = io.StringIO()
            exc.show(file=buf)  # type: ignore[attr-defined]  # usage errors quote the bad argument
            sys.stderr.write(clean(buf.getvalue()))
            return int(getattr(exc, "exit_code", 2))
        raise
    return rv if isinstance(rv, int) else 0  # a command's typer.Exit(code) comes back as the return value


if __name__ == "__main__":
    sys.exit(main())
