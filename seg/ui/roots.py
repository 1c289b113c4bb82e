"""The folders `seg ui` may touch, and the one way a request names something inside them.

A request names a run by its path relative to `--runs` ("exp1", "sweep/trial_003"). Anything
that could leave the root is refused before a file is opened: an absolute path, a `..` or `.`
part, a backslash, and (local roots) a symlink whose target lies outside the root. A store is
named by its position in `--data`, never by a path from the request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seg import fs as segfs
from seg.errors import SegError


class Refused(SegError):
    """A request named a path outside the folders `seg ui` was given."""


@dataclass(frozen=True)
class Roots:
    runs: str  # the folder of run folders (local or gs://)
    data: tuple[str, ...] = ()  # stores the start form offers
    configs: str | None = None  # a folder of experiment YAMLs for the start form

    def run_dir(self, name: str) -> str:
        """RUNS/name, confined to RUNS."""
        return confine(self.runs, name)

    def store(self, index: int) -> str:
        if not 0 <= index < len(self.data):
            raise Refused(f"no store number {index}: seg ui was given {len(self.data)} (--data)")
        return self.data[index]


def confine(root: str, name: str) -> str:
    """root/name when it stays inside root; Refused otherwise."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in name
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise Refused(f"{name!r} is not a path inside {root}")
    if segfs.is_remote(root):
        return segfs.join(root, *parts)
    base = os.path.realpath(root.removeprefix("file://"))
    target = os.path.realpath(os.path.join(base, *parts))
    if os.path.commonpath([base, target]) != base:
        raise Refused(f"{name!r} leads outside {root} (a symlink?)")
    return target
