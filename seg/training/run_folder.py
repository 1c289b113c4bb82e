"""A run folder's checkpoints: writing `last.pt` / `best.pt` / periodic snapshots and
`latest.json`, pruning old snapshots, RNG states, and choosing what `--resume` continues from.

The checkpoint format itself (what one file holds, read safely) is `seg.checkpoint`'s.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch

from seg import fs as segfs
from seg.checkpoint import load_checkpoint, serialise
from seg.errors import CheckpointError

LATEST = "latest.json"  # {"checkpoint": name, "step": n}: the newest complete checkpoint


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states as tensors/lists (loadable with weights_only)."""

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [
            name,
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            pos,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])


def save_run_checkpoints(
    run_dir: str, names: list[str], state: dict[str, Any], keep: int | None = None
) -> None:
    """Save `state` under each of `names` in `run_dir` (serialised once), then `last.pt`, and
    only then point `latest.json` at it: a kill at any moment leaves a complete latest."""

    data = serialise(state)
    for name in [*names, "last.pt"]:
        segfs.write_bytes_atomic(segfs.join(run_dir, name), data)
        prune_snapshots(run_dir, name, keep)
    pointer = {"checkpoint": "last.pt", "step": int(state.get("step", 0))}
    segfs.write_bytes_atomic(segfs.join(run_dir, LATEST), json.dumps(pointer).encode())


def _candidates(run_dir: str) -> list[str]:
    fs, root = segfs.filesystem(run_dir)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return []
    return [
        segfs.join(run_dir, n) for n in sorted(names) if n.endswith(".pt") and not n.startswith(".")
    ]


def find_resume(run_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The newest complete checkpoint in `run_dir` (the one `latest.json` names; if that is
    missing or unreadable, the readable `*.pt` with the highest step), or None for a fresh run."""

    pointer = segfs.join(run_dir, LATEST)
    if segfs.exists(pointer):
        try:
            name = json.loads(segfs.read_bytes(pointer))["checkpoint"]
            path = segfs.join(run_dir, name)
            return path, load_checkpoint(path)
        except (CheckpointError, ValueError, KeyError, TypeError):
            pass  # fall back to scanning: a broken pointer must not block resuming
    best: tuple[str, dict[str, Any]] | None = None
    for path in _candidates(run_dir):
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue  # a torn or foreign file: skip it, an older good one is still usable
        if "optimizer" in state and (best is None or state.get("step", 0) > best[1].get("step", 0)):
            best = (path, state)
    return best


def has_run(run_dir: str) -> bool:
    """True when `run_dir` already holds checkpoints of a run."""
    return segfs.exists(segfs.join(run_dir, LATEST)) or bool(_candidates(run_dir))


def check_compatible(
    state: dict[str, Any], path: str, *, model_name: str, in_channels: int, num_classes: int
) -> None:
    """Refuse a checkpoint made for another model, band count or class count."""
    have = state.get("model", {})
    theirs = (have.get("name"), have.get("in_channels"), have.get("num_classes"))
    ours = (model_name, in_channels, num_classes)
    if theirs != ours:
        raise CheckpointError(
            f"checkpoint {path} is for model {theirs[0]!r} with {theirs[1]} bands and {theirs[2]}"
            f" classes, but this run is {ours[0]!r} with {ours[1]} bands and {ours[2]} classes;"
            " use a checkpoint of the same model and data, or another --out"
        )


def prune_snapshots(run_dir: str, name: str, keep: int | None) -> None:
    """Keep the newest `keep` periodic snapshots of the kind of `name` (step_* or epoch_*)."""
    kind = name.split("_")[0]
    if keep is None or kind not in ("step", "epoch"):
        return
    fs, _ = segfs.filesystem(run_dir)
    snaps = [p for p in _candidates(run_dir) if p.rsplit("/", 1)[-1].startswith(kind + "_")]
    snaps.sort(key=lambda p: int(p.rsplit("_", 1)[-1].split(".")[0]))
    for old in snaps[:-keep]:
        fs.rm(segfs.filesystem(old)[1])


def choose_resume(run_dir: str, resume: str | None) -> tuple[str, dict[str, Any]] | None:
    """What `--resume` means: "auto" = newest complete checkpoint in run_dir (or a fresh run),
    a path = that checkpoint, None = a fresh run, refused when run_dir already holds one."""
    if resume == "auto":
        found = find_resume(run_dir)
        if found is None and has_run(run_dir):  # never start over on top of a run's files
            raise CheckpointError(
                f"{run_dir} holds checkpoints but none is readable; move them away to start"
                " again, or choose another --out"
            )
        return found
    if resume:
        return resume, load_checkpoint(resume)
    if has_run(run_dir):
        from seg.errors import ConfigError

        raise ConfigError(
            f"{run_dir} already holds a training run; continue it with --resume auto,"
            " or choose another --out"
        )
    return None
