"""Errors a user can fix. Each message says what went wrong and how to fix it.

The CLI turns any `SegError` into one line on stderr and exit code 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SegError(Exception):
    """Base for every mistake a user can fix (bad input, bad config, unreachable storage)."""

    exit_code: int = 1


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
