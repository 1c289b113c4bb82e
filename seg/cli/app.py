"""The typer app every command registers with, and the one place errors become exit codes."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from seg.errors import EXIT_USAGE, SegError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="seg",
    help="Satellite and aerial scenes to georeferenced segmentation masks.\n\n"
    "Paths may be local or gs://. Typical flow: seg sample -> seg tile -> seg train -> seg predict"
    " -> seg eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def command(group: typer.Typer, name: str) -> Callable[[F], F]:
    """Register a command whose `SegError` ends in one stderr line and the error's exit code."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except SegError as exc:
                typer.echo(f"seg: error: {exc}", err=True)
                raise typer.Exit(exc.exit_code) from None
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                where = f" ({exc.filename})" if exc.filename else ""
                typer.echo(
                    f"seg: error: no space left on the device{where}; free space or"
                    " choose another --out",
                    err=True,
                )
                raise typer.Exit(1) from None

        group.command(name)(run)
        return fn

    return register


def main() -> None:
    """The console script: a usage mistake (a missing option, `--size abc`, an unknown option)
    is one line `seg: error: ...` and exit 2, like every other mistake, not click's box."""
    from typer._click.exceptions import UsageError  # typer 0.29 carries its own click

    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            print(exc.ctx.get_help())  # `seg` or `seg queue` alone: the help, as asked
            sys.exit(0)
        where = f"seg {exc.ctx.command_path.removeprefix('seg ')}" if exc.ctx else "seg"
        message = " ".join(exc.format_message().split())
        print(f"seg: error: {message} (see `{where} --help`)", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("seg: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
