"""Errors a user can fix. Each message says what went wrong and how to fix it.

The CLI turns any `SegError` into one line on stderr and exit code 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

# Exit codes of every seg command (and of the jobs that run them).
EXIT_FAILED = 1  # a SegError: the message says the fix
EXIT_USAGE = 2  # the command line itself is wrong (typer/click)
EXIT_DIVERGED = 3  # the loss became NaN/inf: a rerun from the same checkpoint would too
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after a checkpoint; retry


class SegError(Exception):
    """Base for every mistake a user can fix (bad input, bad config, unreachable storage)."""

    exit_code: int = EXIT_FAILED


class InputError(SegError):
    """A scene, label or other input file is unusable as given."""


class ConfigError(SegError):
    """A config file, a `--set` override or a command-line option is invalid."""


class StoreError(SegError):
    """The window store is missing, incomplete or not a seg store."""


class CheckpointError(SegError):
    """A checkpoint is missing, corrupt, or does not fit the data or model asked for."""


class ResourceError(SegError):
    """The machine lacks what the job needs (GPU, GPU memory, RAM, a writable path)."""


class OutputExistsError(SegError):
    """An output exists already and `--overwrite` was not given."""


class Preempted(SegError):
    """SIGTERM/SIGINT: work was saved (a checkpoint); exit 75 tells a scheduler to retry."""

    exit_code = EXIT_PREEMPTED


class Diverged(SegError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = EXIT_DIVERGED


def preempt_on_sigterm() -> None:
    """Until the training loop installs its own handler (after seconds of imports and set-up),
    SIGTERM means "preempted before anything was done": exit 75, so that Cloud Batch and
    `seg queue` retry instead of counting a failure (the default would be exit 143)."""
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise Preempted(
            "stopped by SIGTERM before training started; nothing to save: run the same"
            " command again"
        )

    signal.signal(signal.SIGTERM, stop)
