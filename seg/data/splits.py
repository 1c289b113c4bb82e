"""Train/val/test by scene, never by window: overlapping windows of one scene would leak."""

from __future__ import annotations

import numpy as np

from seg.errors import ConfigError
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
    return out
