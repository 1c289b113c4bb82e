"""Per-band statistics over valid pixels, as streaming accumulators that merge exactly.

Kept per scene in the window store (count, sum, sum of squares, min, max), so any set of scenes
(e.g. the train split) merges into the exact mean/std used for normalisation. A scene's own
2nd and 98th percentiles (a percentile stretch, `data.normalise: percentile`) come from a
65536-bin histogram filled in the same pass: exact for <= 16-bit integers, and for other types
within 2**-8 of the value (a bin per bfloat16 value). Bins do not depend on the order or the
strips the pixels come in, so `seg tile` and `seg predict` find the same percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PERCENTILES = (0.02, 0.98)  # the stretch's low and high points
_BINS = 1 << 16


@dataclass
class BandStats:
    """Streaming per-band accumulators over valid pixels; merge by adding."""

    count: np.ndarray  # (C,) float64
    total: np.ndarray  # (C,) float64
    total_sq: np.ndarray  # (C,) float64
    minimum: np.ndarray  # (C,) float64
    maximum: np.ndarray  # (C,) float64
    # (C, 65536) int64 counts while accumulating; None once read back from a store.
    histogram: np.ndarray | None = None
    # the type of the pixels in `histogram` (its bins are `_keys` of that type)
    dtype: str | None = None
    # (2, C) the PERCENTILES of one scene, as kept in its store; None for merged statistics.
    stretch: np.ndarray | None = None

    @classmethod
    def empty(cls, bands: int) -> BandStats:
        z = np.zeros(bands, np.float64)
        return cls(
            z.copy(),
            z.copy(),
            z.copy(),
            np.full(bands, np.inf),
            np.full(bands, -np.inf),
            histogram=np.zeros((bands, _BINS), np.int64),
        )

    def update(self, pixels: np.ndarray, valid: np.ndarray) -> None:
        """Add `pixels` (C, H, W) where `valid` (H, W) is True."""
        if self.histogram is not None and valid.any():
            self.dtype = pixels.dtype.name
            keys = _keys(pixels if valid.all() else pixels[:, valid])  # (C, ...) uint16
            for b in range(keys.shape[0]):
                self.histogram[b] += np.bincount(keys[b].ravel(), minlength=_BINS)
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
        """Several scenes' statistics; they have no percentiles (a stretch is one scene's)."""
        return BandStats(
            self.count + other.count,
            self.total + other.total,
            self.total_sq + other.total_sq,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    def percentiles(self) -> np.ndarray | None:
        """(2, C) float64: each band's PERCENTILES over its valid pixels (the smallest value
        with at least that share of pixels at or below it), or None where they are unknown."""
        if self.histogram is None or self.dtype is None:
            return self.stretch
        if not (self.count > 0).all():
            return None
        dtype = np.dtype(self.dtype)
        cum = np.cumsum(self.histogram, axis=1)  # (C, 65536)
        out = np.empty((len(PERCENTILES), cum.shape[0]), np.float64)
        for i, p in enumerate(PERCENTILES):
            for b in range(cum.shape[0]):
                key = int(np.searchsorted(cum[b], p * cum[b, -1]))
                out[i, b] = _value(key, dtype)
        return out

    @property
    def mean(self) -> np.ndarray:
        return self.total / np.maximum(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.total_sq / np.maximum(self.count, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(var, 0.0))

    def to_json(self) -> dict[str, list[float]]:
        """The accumulators, mean and std, and the percentiles where they are known."""

        def clean(a: np.ndarray) -> list[float]:
            return [float(x) if math.isfinite(x) else 0.0 for x in a]

        out = {
            "count": clean(self.count),
            "sum": clean(self.total),
            "sum_sq": clean(self.total_sq),
            "min": clean(self.minimum),
            "max": clean(self.maximum),
            "mean": clean(self.mean),
            "std": clean(self.std),
        }
        if (stretch := self.percentiles()) is not None:
            out["p02"], out["p98"] = clean(stretch[0]), clean(stretch[1])
        return out

    @classmethod
    def from_json(cls, d: dict[str, list[float]]) -> BandStats:
        stretch = None
        if "p02" in d and "p98" in d:
            stretch = np.asarray([d["p02"], d["p98"]], np.float64)  # (2, C)
        return cls(
            np.asarray(d["count"], np.float64),
            np.asarray(d["sum"], np.float64),
            np.asarray(d["sum_sq"], np.float64),
            np.asarray(d["min"], np.float64),
            np.asarray(d["max"], np.float64),
            stretch=stretch,
        )


def _keys(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any type -> uint16 histogram bins, in the order of the values: <= 16-bit
    integers are their own bin (signed ones offset); anything else is cast to float32 and cut
    to its top 16 bits (a bfloat16), reordered so that negative values sort below positive."""
    kind, size = pixels.dtype.kind, pixels.dtype.itemsize
    if kind == "u" and size <= 2:
        return pixels.astype(np.uint16, copy=False)
    if kind == "i" and size <= 2:
        return (pixels.astype(np.int32) + 32768).astype(np.uint16)
    top = (np.ascontiguousarray(pixels, np.float32).view(np.uint32) >> 16).astype(np.uint16)
    negative = top >= 0x8000
    return np.where(negative, 0xFFFF - top, top + 0x8000).astype(np.uint16)


def _value(key: int, dtype: np.dtype) -> float:
    """The value a histogram bin of `_keys` stands for (its lower edge in magnitude)."""
    if dtype.kind == "u" and dtype.itemsize <= 2:
        return float(key)
    if dtype.kind == "i" and dtype.itemsize <= 2:
        return float(key - 32768)
    top = key - 0x8000 if key >= 0x8000 else 0xFFFF - key
    return float(np.array([top << 16], np.uint32).view(np.float32)[0])


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
