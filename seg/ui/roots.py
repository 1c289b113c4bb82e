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
    predictions: str | None = None  # a folder of `seg predict` outputs for the map pages
    scenes: str | None = None  # where the predicted scenes lie (their map layer)

    def run_dir(self, name: str) -> str:
        """RUNS/name, confined to RUNS."""
        return confine(self.runs, name)

    def mask(self, name: str) -> str:
        """PREDICTIONS/name, confined to PREDICTIONS."""
        if not self.predictions:
            raise Refused("seg ui was given no --predictions folder: no maps to show")
        return confine(self.predictions, name)

    def serves(self, path: str) -> bool:
        """Whether `path` (a scene named by a mask's tag) lies inside --predictions or --scenes."""
        return any(root and inside(root, path) for root in (self.predictions, self.scenes))

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


def inside(root: str, path: str) -> bool:
    """Whether the absolute or gs:// `path` lies in `root` (symlinks resolved for local ones)."""
    if segfs.is_remote(root) or segfs.is_remote(path):
        base = root.rstrip("/") + "/"
        return segfs.is_remote(root) and segfs.is_remote(path) and path.startswith(base)
    base = os.path.realpath(root.removeprefix("file://"))
    target = os.path.realpath(path.removeprefix("file://"))
    return os.path.commonpath([base, target]) == base
