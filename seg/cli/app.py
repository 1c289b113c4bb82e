"""The typer app every command registers with, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from seg.errors import SegError

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

        group.command(name)(run)
        return fn

    return register


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("seg: interrupted", file=sys.stderr)
        sys.exit(130)
