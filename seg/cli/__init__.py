"""The `seg` command line: parse, call one library function, report.

May import: everything (it is the top of the house).

No logic lives here. Each command builds the library call's arguments from its options, hands it
a `ConsoleReporter` (progress bars and warnings on stderr) and prints the result. A `SegError`
becomes one line `seg: error: ...` on stderr and its exit code (1; 75 for a preemption), inside
the typer app, so typer's own CliRunner sees exactly what a shell sees.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from seg.cli import artifacts, data, jobs, model, ui  # noqa: F401  (each registers its commands)
from seg.cli.app import app, main

__all__ = ["app", "main"]
