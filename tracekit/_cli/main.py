"""The `tracekit` command. Each noun lives in its own module exposing `register(app)`.

    tracekit sql "SELECT name, count(*) FROM spans GROUP BY 1"
    tracekit traces list
    tracekit --help
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

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
    "tracekit._cli.annotate",
    "tracekit._cli.demo",
    "tracekit._cli.eval",
    "tracekit._cli.optimize",
    "tracekit._cli.optimize_confirm",
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


_command: Any = None


def command() -> Any:
    """The click command tree of `app`, built once, its help free of Python type placeholders."""
    global _command
    if _command is None:
        from typer.main import get_command

        from ._usage import plain_help

        _command = plain_help(get_command(app))
    return _command


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """tracekit's own warnings (e.g. a store folder that does not exist) as one plain line on stderr."""
    from .._errors import TracekitWarning
    from ._common import say

    if issubclass(category, TracekitWarning):
        say(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage and input errors print one clear line (no traceback) and exit 2."""
    from .._errors import TracekitWarning
    from ._usage import one_line, usage_errors

    with warnings.catch_warnings():
        warnings.simplefilter("always", TracekitWarning)  # printed as a line, never raised (whatever the filters)
        warnings.showwarning = _show_warning
        try:
            rv = command().main(args=argv, prog_name="tracekit", standalone_mode=False)
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
        except BrokenPipeError:  # `tracekit sql ... | head`: the reader left; nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except OSError as exc:  # a path given on the command line (or the disk): which file and why, not a traceback
            from ._common import say

            names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
            say(f"error: {exc.strerror or exc}" + (f": {names}" if names else ""), err=True)
            return 2
        except Exception as exc:  # usage errors (click's, or the click typer vendors)
            if isinstance(exc, usage_errors()):
                line, code = one_line(exc, command(), list(sys.argv[1:] if argv is None else argv))
                sys.stderr.write(line + "\n")  # one_line made the quoted input's control characters visible
                return code
            raise
    return rv if isinstance(rv, int) else 0  # a command's typer.Exit(code) comes back as the return value


if __name__ == "__main__":
    sys.exit(main())
