"""Per-band statistics over valid pixels, as streaming accumulators that merge exactly.

Kept per scene in the window store (count, sum, sum of squares, min, max), so any set of scenes
(e.g. the train split) merges into the exact mean/std used for normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class BandStats:
    """Streaming per-band accumulators over valid pixels; merge by adding."""

    count: np.ndarray  # (C,) float64
    total: np.ndarray  # (C,) float64
    total_sq: np.ndarray  # (C,) float64
    minimum: np.ndarray  # (C,) float64
    maximum: np.ndarray  # (C,) float64

    @classmethod
    def empty(cls, bands: int) -> BandStats:
        z = np.zeros(bands, np.float64)
        return cls(z.copy(), z.copy(), z.copy(), np.full(bands, np.inf), np.full(bands, -np.inf))

    def update(self, pixels: np.ndarray, valid: np.ndarray) -> None:
        """Add `pixels` (C, H, W) where `valid` (H, W) is True."""
        if pixels.dtype.kind in "ui" and pixels.dtype.itemsize <= 2:
            self._update_integer(pixels, valid)
            return
        if not valid.any():
            return
        v = pixels[:, valid].astype(np.float64)  # (C, n_valid)
        self.count += v.shape[1]
        self.total += v.sum(axis=1)
        self.total_sq += np.square(v).sum(axis=1)
        self.minimum = np.minimum(self.minimum, v.min(axis=1))
        self.maximum = np.maximum(self.maximum, v.max(axis=1))

    def _update_integer(self, pixels: np.ndarray, valid: np.ndarray) -> None:
        """<= 16-bit integers: exact integer sums over all pixels, minus the few invalid ones."""
        n = valid.size
        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            return
        flat = np.ascontiguousarray(pixels).reshape(pixels.shape[0], n)  # (C, H*W), a view
        if n_valid * 2 < n:  # mostly invalid: gather the valid pixels instead
            flat, n = flat[:, valid.ravel()], n_valid  # (C, n_valid)
        invalid = np.flatnonzero(~valid.ravel()) if n > n_valid else None  # (n_invalid,)
        info = np.iinfo(pixels.dtype)
        for b in range(flat.shape[0]):
            band = flat[b]  # (n,)
            total, total_sq = _integer_sums(band)
            lo, hi = band.min(), band.max()
            if invalid is not None:
                gone = band[invalid]
                t, q = _integer_sums(gone)
                total, total_sq = total - t, total_sq - q
                # Min/max over valid pixels only: invalid ones replaced by a neutral value.
                scratch = band.copy()
                scratch[invalid] = info.max
                lo = scratch.min()
                scratch[invalid] = info.min
                hi = scratch.max()
            self.count[b] += n_valid
            self.total[b] += float(total)
            self.total_sq[b] += float(total_sq)
            self.minimum[b] = min(self.minimum[b], float(lo))
            self.maximum[b] = max(self.maximum[b], float(hi))

    def merge(self, other: BandStats) -> BandStats:
        return BandStats(
            self.count + other.count,
            self.total + other.total,
            self.total_sq + other.total_sq,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    @property
    def mean(self) -> np.ndarray:
        return self.total / np.maximum(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.total_sq / np.maximum(self.count, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(var, 0.0))

    def to_json(self) -> dict[str, list[float]]:
        def clean(a: np.ndarray) -> list[float]:
            return [float(x) if math.isfinite(x) else 0.0 for x in a]

        return {
            "count": clean(self.count),
            "sum": clean(self.total),
            "sum_sq": clean(self.total_sq),
            "min": clean(self.minimum),
            "max": clean(self.maximum),
            "mean": clean(self.mean),
            "std": clean(self.std),
        }

    @classmethod
    def from_json(cls, d: dict[str, list[float]]) -> BandStats:
        return cls(
            np.asarray(d["count"], np.float64),
            np.asarray(d["sum"], np.float64),
            np.asarray(d["sum_sq"], np.float64),
            np.asarray(d["min"], np.float64),
            np.asarray(d["max"], np.float64),
        )


_CHUNK = 1 << 16  # pixels summed at once: cache-sized, and 2**16 * 255**2 < 2**32


def _integer_sums(values: np.ndarray) -> tuple[int, int]:
    """Exact sum and sum of squares of 1-D <= 16-bit integers, as Python ints.

    Chunks keep the squares in cache and let 8-bit sums run in 32-bit accumulators (the cast to
    64 bits is what makes a plain `.sum(dtype=uint64)` slow); Python ints never overflow.
    """
    kind, size = values.dtype.kind, values.dtype.itemsize
    wide = np.dtype(f"{kind}{2 * size}")  # e.g. uint8 -> uint16: 255**2 and (-128)**2 fit
    acc = np.dtype(f"{kind}{4 if size == 1 else 8}")
    squares = np.empty(min(_CHUNK, values.size), wide)
    total = total_sq = 0
    for i in range(0, values.size, _CHUNK):
        x = values[i : i + _CHUNK]
        sq = squares[: x.size]
        np.multiply(x, x, out=sq, dtype=wide)
        total += int(np.add.reduce(x, dtype=acc))
        total_sq += int(np.add.reduce(sq, dtype=acc))
    return total, total_sq
