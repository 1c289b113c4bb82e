"""Train/val/test by scene, never by window: overlapping windows of one scene would leak.

With `splits.blocks` and no scene to hold out, each training scene is split inside itself
(`block_split`): blocks of one window's footprint go to val/test, and the training windows that
overlap a held-out window are dropped, so no pixel is both trained on and validated on.
"""

from __future__ import annotations

import numpy as np

from seg.errors import ConfigError, InputError
from seg.tile_config import SplitSection


def assign_splits(scene_ids: list[str], cfg: SplitSection) -> dict[str, str]:
    """Scene id -> train|val|test from the FULL sorted list, so every shard computes the same."""
    explicit = {
        **{s: "test" for s in cfg.test_scenes},
        **{s: "val" for s in cfg.val_scenes},
        **{s: "train" for s in cfg.train_scenes},
    }
    unknown = sorted(set(explicit) - set(scene_ids))
    if unknown:
        raise ConfigError(f"splits name scenes that are not inputs: {', '.join(unknown[:5])}")
    rest = [s for s in sorted(scene_ids) if s not in explicit]
    total = cfg.train + cfg.val + cfg.test
    if rest and total <= 0:
        raise ConfigError("split fractions train/val/test are all 0; give at least one > 0")
    order = [rest[i] for i in np.random.default_rng(cfg.seed).permutation(len(rest))]
    n = len(order)
    n_val = round(n * cfg.val / total) if n else 0
    n_test = min(round(n * cfg.test / total), n - n_val) if n else 0
    # A split asked for gets at least one scene while training keeps at least one.
    spare = 1 if cfg.train > 0 else 0
    if cfg.val > 0 and n_val == 0 and n - n_test - spare >= 1:
        n_val = 1
    if cfg.test > 0 and n_test == 0 and n - n_val - spare >= 1 and n >= 3:
        n_test = 1
    if cfg.train == 0:  # rounding leftovers go to val rather than to a split not asked for
        n_val = n - n_test
    out = dict(explicit)
    for i, s in enumerate(order):
        out[s] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    if cfg.blocks and cfg.val > 0 and "val" not in out.values():
        out = {s: BLOCKS if split == "train" else split for s, split in out.items()}
    return out


BLOCKS = "blocks"  # a scene split inside itself: its windows' splits are in its attributes


def block_split(
    windows: list[tuple[int, int, int, int]], size: int, cfg: SplitSection, scene_id: str
) -> dict[str, list[int]]:
    """Split -> window numbers of one scene's windows (row, col, height, width), by blocks of
    size x size pixels; training windows that share a pixel with a held-out one are left out."""
    import zlib

    blocks: dict[tuple[int, int], list[int]] = {}
    for i, (r, c, _, _) in enumerate(windows):
        blocks.setdefault((r // size, c // size), []).append(i)
    keys = sorted(blocks)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(scene_id.encode())])
    # Random, but the blocks with the fewest windows first: the scene's last row and column of
    # blocks (cut by its edge) cost training the fewest windows to hold out.
    ties = rng.permutation(len(keys))
    order = [
        keys[i] for i in sorted(range(len(keys)), key=lambda i: (len(blocks[keys[i]]), ties[i]))
    ]
    total = cfg.train + cfg.val + cfg.test
    n_val = max(1, round(len(keys) * cfg.val / total)) if cfg.val > 0 else 0
    n_test = round(len(keys) * cfg.test / total) if cfg.test > 0 else 0
    held = {"val": order[:n_val], "test": order[n_val : n_val + n_test]}
    out = {name: sorted(i for k in ks for i in blocks[k]) for name, ks in held.items()}
    out = {name: idx for name, idx in out.items() if idx}
    out_of_train = [windows[i] for idx in out.values() for i in idx]
    out["train"] = [
        i for i, w in enumerate(windows)
        if all(not _overlap(w, h) for h in out_of_train)
    ]  # fmt: skip
    if not out["train"] or not out.get("val"):
        raise InputError(
            f"scene {scene_id!r} has {len(windows)} windows: too few to split inside it (val"
            " takes a block of one window's footprint, and its overlapping windows are left out"
            " of training); tile more or larger scenes, or set splits.blocks false"
        )
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two windows (row, col, height, width) share a pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
