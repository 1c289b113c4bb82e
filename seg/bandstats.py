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
        if not valid.any():
            return
        if pixels.dtype.kind in "ui" and pixels.dtype.itemsize <= 2:
            if valid.all():
                self._update_integer_sums(pixels)
            else:
                self._update_histogram(pixels, valid)
            return
        v = pixels[:, valid].astype(np.float64)  # (C, n_valid)
        self.count += v.shape[1]
        self.total += v.sum(axis=1)
        self.total_sq += np.square(v).sum(axis=1)
        self.minimum = np.minimum(self.minimum, v.min(axis=1))
        self.maximum = np.maximum(self.maximum, v.max(axis=1))

    def _update_integer_sums(self, pixels: np.ndarray) -> None:
        """All pixels valid, <= 16-bit integers: exact integer sums (squares fit the wider type)."""
        wide = np.dtype(f"{pixels.dtype.kind}{2 * pixels.dtype.itemsize}")  # e.g. uint8 -> uint16
        acc = np.uint64 if pixels.dtype.kind == "u" else np.int64
        for b in range(pixels.shape[0]):
            band = pixels[b]  # (H, W)
            squares = band.astype(wide)
            squares *= squares  # 255**2 < 2**16, 65535**2 < 2**32, (-32768)**2 < 2**31
            self.count[b] += band.size
            self.total[b] += float(band.sum(dtype=acc))
            self.total_sq[b] += float(squares.sum(dtype=acc))
            self.minimum[b] = min(self.minimum[b], float(band.min()))
            self.maximum[b] = max(self.maximum[b], float(band.max()))

    def _update_histogram(self, pixels: np.ndarray, valid: np.ndarray) -> None:
        """Exact sums for <= 16-bit integers via a histogram: much faster than float64 sums."""
        bits = 8 * pixels.dtype.itemsize
        unsigned = np.dtype(f"uint{bits}")
        signed = pixels.dtype.kind == "i"
        offset = 1 << (bits - 1) if signed else 0
        invalid = ~valid
        n_invalid = int(invalid.sum())
        for b in range(pixels.shape[0]):
            # Signed values map order-preserving onto unsigned ones by flipping the sign bit.
            band = pixels[b].view(unsigned)  # (H, W)
            if signed:
                band = band ^ unsigned.type(offset)
            if n_invalid * 2 < band.size:  # mostly valid: all pixels minus the few invalid ones
                hist = np.bincount(band.ravel(), minlength=1 << bits)
                if n_invalid:
                    hist -= np.bincount(band[invalid], minlength=1 << bits)
            else:
                hist = np.bincount(band[valid], minlength=1 << bits)
            h = hist.astype(np.float64)
            nz = np.flatnonzero(hist)
            values = np.arange(h.size, dtype=np.float64) - offset
            self.count[b] += h.sum()
            self.total[b] += float(h @ values)
            self.total_sq[b] += float(h @ np.square(values))
            self.minimum[b] = min(self.minimum[b], values[nz[0]])
            self.maximum[b] = max(self.maximum[b], values[nz[-1]])

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
