"""One way to turn raw window pixels into what the network sees, for training and prediction.

`prepare_window` normalises with the training split's band statistics (or, for models trained
with `data.normalise: scene` or `percentile`, with the scene's own, which `seg tile` keeps per
scene and `seg predict` computes the same way: `scene_stats`), sets every pixel without
data to 0 (the training mean) and pads to the window size with 0. The dataset and `seg predict`
both call it, so the network never meets one input in training and another at the same place
in prediction (tests/data/test_window_prep.py feeds one window through both paths).

In a window store, a pixel has no data when all its bands are 0 and its label is IGNORE: that
is how `seg tile` writes nodata and window padding (`store_valid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from seg.classes import IGNORE
from seg.errors import StoreError

if TYPE_CHECKING:
    from seg.checkpoint import CheckpointInfo
    from seg.data.bandstats import BandStats
    from seg.data.store import WindowStore
    from seg.geo.raster import SceneInfo


# A percentile stretch maps a scene's 2nd..98th percentiles to -STRETCH..STRETCH and clips
# there: about a standardised band's range (a normal band's 2nd percentile is at -2.05 sd).
STRETCH = 2.0


@dataclass(frozen=True)
class Normalisation:
    """Per-band (x - mean) / std, clipped to +-clip when set; a constant band (std 0) is
    divided by 1 instead."""

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32, > 0
    clip: float | None = None

    def __post_init__(self) -> None:
        std = np.asarray(self.std, np.float32)
        object.__setattr__(self, "mean", np.asarray(self.mean, np.float32).reshape(-1))
        object.__setattr__(self, "std", np.where(std > 1e-12, std, 1.0).astype(np.float32))

    @classmethod
    def from_store(cls, store: WindowStore, scene_ids: list[str]) -> Normalisation:
        stats = store.band_stats(scene_ids)
        return cls(stats.mean, stats.std)

    @classmethod
    def of(cls, info: CheckpointInfo) -> Normalisation:
        """The normalisation a checkpoint was trained with."""
        return cls(np.asarray(info.mean), np.asarray(info.std))

    @classmethod
    def of_stats(cls, stats: BandStats, fallback: Normalisation) -> Normalisation:
        """A scene's own normalisation (checkpoints with `normalise: scene`); `fallback` (the
        training split's) when the scene has no valid pixel to take statistics from."""
        if not (stats.count > 0).all():
            return fallback
        return cls(stats.mean, stats.std)

    @classmethod
    def for_scene(cls, mode: str, stats: BandStats, fallback: Normalisation) -> Normalisation:
        """How a model trained with `data.normalise: mode` normalises a scene with these band
        statistics: "global" -> `fallback` (the training split's); "scene" -> the scene's own
        mean/std; "percentile" -> the scene's 2nd..98th percentiles stretched to +-STRETCH,
        clipped (`fallback` for a scene without a valid pixel)."""
        if mode == "global":
            return fallback
        if mode == "scene":
            return cls.of_stats(stats, fallback)
        if not (stats.count > 0).all():
            return fallback
        stretch = stats.percentiles()  # (2, C): low, high
        if stretch is None:
            raise StoreError(
                "the store keeps no percentiles for a scene (tiled by an older seg);"
                " re-run `seg tile` to train or predict with data.normalise: percentile"
            )
        low, high = stretch
        return cls((low + high) / 2, (high - low) / (2 * STRETCH), clip=STRETCH)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Normalisation:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) any dtype -> float32 (C, H, W)."""
        img = image.astype(np.float32)
        out = (img - self.mean[:, None, None]) / self.std[:, None, None]
        if self.clip is not None:
            np.clip(out, -self.clip, self.clip, out=out)
        return out


def prepare_window(
    raw: np.ndarray, valid: np.ndarray | None, norm: Normalisation, size: int
) -> np.ndarray:
    """(C, h, w) raw pixels and (h, w) validity -> (C, size, size) float32 for the network:
    normalised, 0 where there is no data, and padded with 0 beyond h x w (h, w <= size)."""
    x = norm.apply(raw)
    if valid is not None and not valid.all():
        x[:, ~valid] = 0.0
    c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    out = np.zeros((c, size, size), np.float32)
    out[:, :h, :w] = x
    return out


def store_valid(raw: np.ndarray, mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """(S, S) validity of a stored window: inside its valid extent (height x width), and not a
    pixel `seg tile` blanked for nodata (all bands 0 with an IGNORE label, when labelled)."""
    size = raw.shape[-1]
    valid = np.zeros((size, size), bool)
    valid[:height, :width] = True
    if mask is not None:
        valid &= ~((mask == IGNORE) & ~raw.any(axis=0))
    return valid


def scene_stats(ds: Any, info: SceneInfo, rows: int = 512) -> BandStats:
    """A scene's band statistics over its valid pixels, read in strips: the numbers `seg tile`
    keeps for it (same reader, same validity), so a scene normalises alike in both."""
    from seg.data.bandstats import BandStats
    from seg.geo.raster import read_strip

    stats = BandStats.empty(len(info.bands))
    for r in range(0, info.height, rows):
        image, valid = read_strip(ds, info, r, min(rows, info.height - r))
        stats.update(image, valid)
    return stats
