"""The `seg` command line: parse, call one library function, report.

No logic lives here. A `SegError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from seg.errors import SegError  # noqa: E402

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


def shard_default(name: str) -> int | None:
    """Cloud Batch array jobs set BATCH_TASK_INDEX/BATCH_TASK_COUNT; use them as defaults."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


# --- commands are added below, one function per command, each calling one library function ---


def main() -> None:
    try:
        app()
    except SegError as exc:
        print(f"seg: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("seg: interrupted", file=sys.stderr)
        sys.exit(130)
