"""How library code tells a person what it is doing: progress bars, warnings, notes.

Library functions take a `Reporter` and never print. The base class is silent, so `seg` used as
a library says nothing unless asked; the CLI passes a `ConsoleReporter`, which draws every bar
with the same columns on stderr (results, which go to stdout, stay the CLI's own business).
"""

from __future__ import annotations

import sys
from typing import IO, Any


class Bar:
    """One progress bar. The base class does nothing (a silent reporter's bar)."""

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """`n` more units done; `note` replaces the text shown after the bar (loss, speed)."""

    def reset(self, total: int | None, description: str | None = None) -> None:
        """Start the bar over at 0 of `total` (e.g. the next scene's windows)."""

    def close(self) -> None:
        """Remove the bar."""

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reporter:
    """Silent: every call is a no-op. Subclass it to show progress somewhere."""

    def bar(self, description: str, total: int | None = None, completed: int = 0) -> Bar:
        """A progress bar for `total` units (None = unknown), `completed` of them done."""
        return Bar()

    def warn(self, message: str) -> None:
        """Something the user should know, that does not stop the work."""

    def note(self, message: str) -> None:
        """A line of progress worth keeping (e.g. an epoch's summary)."""


SILENT = Reporter()


class _RichBar(Bar):
    def __init__(self, owner: ConsoleReporter, task: Any) -> None:
        self.owner, self.task = owner, task

    def advance(self, n: int = 1, note: str | None = None) -> None:
        fields = {} if note is None else {"note": note}
        self.owner.progress().update(self.task, advance=n, **fields)

    def reset(self, total: int | None, description: str | None = None) -> None:
        kw = {} if description is None else {"description": description}
        self.owner.progress().reset(self.task, total=total, **kw)

    def close(self) -> None:
        self.owner.release(self.task)


class ConsoleReporter(Reporter):
    """Rich progress bars and messages on stderr; one live display shared by all open bars.

    The columns (one definition for every command): what, bar, done/total, elapsed, ETA, note.
    """

    def __init__(self, progress: bool = True, stream: IO[str] | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, soft_wrap=True, highlight=False)
        # Bars only on a terminal: in a log file (Cloud Batch, nohup) they are noise; notes and
        # warnings are still written.
        self.enabled = progress and self.console.is_terminal
        self._progress: Any = None
        self._open: set[Any] = set()

    def progress(self) -> Any:
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                console=self.console,
            )
            self._progress.start()
        return self._progress

    def bar(self, description: str, total: int | None = None, completed: int = 0) -> Bar:
        if not self.enabled:
            return Bar()
        task = self.progress().add_task(description, total=total, completed=completed, note="")
        self._open.add(task)
        return _RichBar(self, task)

    def release(self, task: Any) -> None:
        if task not in self._open:
            return
        self._open.discard(task)
        if self._open and self._progress is not None:
            self._progress.remove_task(task)
        if not self._open and self._progress is not None:
            self._progress.stop()
            self._progress = None

    def warn(self, message: str) -> None:
        self.console.print(f"seg: warning: {message}", markup=False)

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)
