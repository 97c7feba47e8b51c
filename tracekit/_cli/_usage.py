"""Usage errors as one line, and help that names values instead of Python types.

A usage mistake (`tracekit` alone, an unknown command or option, `--budget abc`, a missing
argument) is the user's, not tracekit's: it ends in one line on stderr naming the problem and the
nearest help (`Try 'tracekit sql --help'.`), exit 2, never a traceback. Click prints a usage block,
a blank line and `Error: ...`, and a bare group prints its whole help as an error; `one_line`
turns each into the single line. Typer >= 0.25 vendors its own click, whose exceptions are not
`click.ClickException`: `usage_errors()` names both families.

Typer's help shows each parameter's Python type as a placeholder (`--errors <bool>`,
`--limit <int>`, `QUERY <str>`), which reads as jargon and, for a flag, suggests it takes a value.
`plain_help(command)` gives every option with a value its conventional NAME metavar, flags none,
and arguments their NAME without a type, on the command tree built for this process.
"""

from __future__ import annotations

from typing import Any

import typer

from .._util.termtext import clean


def usage_errors() -> tuple[type[BaseException], ...]:
    """Click's exception base, and typer's (typer >= 0.25 vendors click: its usage errors are not click's)."""
    out: list[type[BaseException]] = [t for t in (getattr(typer, "TyperException", None),) if t is not None]
    try:
        import click

        out.append(click.ClickException)
    except ImportError:
        pass
    return tuple(out)


def _is(exc: BaseException, name: str) -> bool:
    return any(k.__name__ == name for k in type(exc).__mro__)


def one_line(exc: BaseException, root: Any, argv: list[str], prog: str = "tracekit") -> tuple[str, int]:
    """The line to print for a click/typer exception, and the exit code (2 for usage errors).

    The help named is the command's the error belongs to; errors the option parser raises carry
    no context, so the command is then found by walking `argv`'s leading subcommand names.
    """
    ctx: Any = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or nearest_path(root, argv, prog)
    fmt = getattr(exc, "format_message", None)
    message = fmt() if callable(fmt) else str(exc)
    command = getattr(ctx, "command", None)
    if message.strip() == "Missing command." and command is not None and hasattr(command, "list_commands"):
        message = f"missing command: give one of {', '.join(command.list_commands(ctx))}"
    if _is(exc, "NoSuchOption") and any(getattr(p, "nargs", 1) == -1 for p in getattr(command, "params", ())):
        message += "; if the option is the command's own, put the command after '--'"
    message = clean(" ".join(str(message).split()), newlines=False).rstrip(".")
    code = int(getattr(exc, "exit_code", 2))
    if code == 2 or _is(exc, "UsageError"):
        return f"error: {message}. Try '{path} --help'.", 2
    return f"error: {message}", code


def nearest_path(root: Any, argv: list[str], prog: str = "tracekit") -> str:
    """`tracekit traces list` for argv `traces list --limit`: the deepest command argv names."""
    path, command = [prog], root
    for token in argv:
        sub = (getattr(command, "commands", None) or {}).get(token)
        if sub is None:
            break
        path.append(token)
        command = sub
    return " ".join(path)


def plain_help(command: Any, name: str = "tracekit") -> Any:
    """Give every parameter of `command` and its subcommands a plain metavar (see the module docstring).

    Groups also stop printing their whole help as the error for a missing subcommand (click's
    `no_args_is_help`): the missing command becomes a usage error like any other (`one_line`).
    """
    subs = getattr(command, "commands", None) or {}
    for sub_name, sub in subs.items():
        plain_help(sub, sub_name)
    if subs:
        command.no_args_is_help = False
    params = list(getattr(command, "params", ()))
    context_class = getattr(command, "context_class", None)
    if context_class is not None and hasattr(command, "get_help_option"):
        help_option = command.get_help_option(context_class(command, info_name=name))  # made once, then cached
        params += [help_option] if help_option is not None else []
    for param in params:
        if getattr(param, "param_type_name", "") == "argument":
            param.metavar = param.metavar or (param.name or "value").upper()
            if hasattr(type(param), "display_type_rich"):
                param.__class__ = _untyped(type(param))
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""  # a flag takes no value: nothing after its name
        elif param.metavar is None:
            longest = max(getattr(param, "opts", []) or [param.name or "value"], key=len)
            param.metavar = longest.lstrip("-").replace("-", "_").upper()
    return command


_UNTYPED: dict[type, type] = {}


def _untyped(base: type) -> type:
    """A subclass of typer's argument class whose help shows no `<type>` column (its NAME says enough)."""
    sub = _UNTYPED.get(base)
    if sub is None:
        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None

        sub = _UNTYPED[base] = type(base.__name__, (base,), {"display_type_rich": display_type_rich})
    return sub
