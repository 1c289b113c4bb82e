"""Seam-free blending of overlapping window predictions, streamed row band by row band.

Every window's class probabilities are weighted by a smooth taper (a Hann ramp over the overlap)
that is *not* applied on sides touching the scene border, so pixels at the scene edge keep full
weight instead of going to zero. The accumulator keeps sum(w*p) and sum(w) only for one band of
rows (window-size tall, full scene width); when a window arrives that starts lower down, the rows
above it can no longer change, so they are divided once, handed to a sink and freed. Memory is
O(classes x window size x scene width), independent of the scene height.

`seg predict` (windows read from a GeoTIFF) and `seg stitch` (windows read from a predictions
zarr) both use `Stitcher`; only where the window probabilities come from differs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from seg.geo.grid import Window

# sink(row_start, probs (K, n, W) float32, valid (n, W) bool): finished output rows, in order.
Sink = Callable[[int, np.ndarray, np.ndarray], None]
EMIT_ROWS = 64


def ramp(overlap: int) -> np.ndarray:
    """Rising half of a Hann window over `overlap` pixels; strictly inside (0, 1), never zero.

    Sampled at pixel centres ((i + 0.5) / overlap) so the first pixel still has weight > 0.
    """
    if overlap <= 0:
        return np.ones(0, np.float32)
    x = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
    return np.sin(0.5 * np.pi * x).astype(np.float32) ** 2


@lru_cache(maxsize=64)
def axis_weights(length: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weights (length,) for one window axis: ramps on the tapered sides, 1 elsewhere."""
    w = np.ones(length, np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        r = ramp(n)
        if taper_start:
            w[:n] = r
        if taper_end:
            w[length - n :] = np.minimum(w[length - n :], r[::-1])
    w.setflags(write=False)
    return w


def window_weights(window: Window, scene_height: int, scene_width: int, overlap: int) -> np.ndarray:
    """(h, w) blending weights of `window`'s valid extent; untapered where it meets the border."""
    return _weights(
        window.height,
        window.width,
        overlap,
        taper_y=(window.row_off > 0, window.row_off + window.height < scene_height),
        taper_x=(window.col_off > 0, window.col_off + window.width < scene_width),
    )


@lru_cache(maxsize=64)
def _weights(
    h: int, w: int, overlap: int, *, taper_y: tuple[bool, bool], taper_x: tuple[bool, bool]
) -> np.ndarray:
    # A scene has at most 9 kinds of window (corner, edge, interior): cache their weights.
    out = np.outer(axis_weights(h, overlap, *taper_y), axis_weights(w, overlap, *taper_x))
    out.setflags(write=False)
    return out  # (h, w)


class Stitcher:
    """Streaming accumulator of weighted window probabilities over one band of rows.

    Windows must arrive with non-decreasing `row_off` (row-major order, as `seg.geo.grid.windows`
    yields them); within a row of windows any order works. Call `finish()` after the last one.
    """

    def __init__(
        self,
        height: int,
        width: int,
        num_classes: int,
        *,
        size: int,
        overlap: int,
        sink: Sink,
    ) -> None:
        self.height, self.width, self.size = height, width, size
        self.overlap = max(0, overlap)
        self.sink = sink
        self.band_rows = min(size, height)
        # The band [top, top + band_rows): every window starting at `top` ends inside it.
        self.num = np.zeros((num_classes, self.band_rows, width), np.float32)  # sum(w * p)
        self.den = np.zeros((self.band_rows, width), np.float32)  # sum(w)
        self.valid = np.zeros((self.band_rows, width), bool)
        self.top = 0

    def add(self, window: Window, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Blend `probs` (K, >=h, >=w) for `window`; `valid` (>=h, >=w) marks input with data.

        Arrays may be padded beyond the window's valid extent; the padding is ignored.
        """
        if window.row_off < self.top:
            raise ValueError(
                f"window at row {window.row_off} arrived after rows up to {self.top} were"
                " finished; feed windows in row-major order"
            )
        if (
            window.row_off + window.height > self.height
            or window.col_off + window.width > self.width
        ):
            raise ValueError(f"{window} lies outside the {self.height}x{self.width} scene")
        self._advance(window.row_off)
        h, w = window.height, window.width
        r0, c0 = window.row_off - self.top, window.col_off
        weights = window_weights(window, self.height, self.width, self.overlap)  # (h, w)
        self.num[:, r0 : r0 + h, c0 : c0 + w] += probs[:, :h, :w] * weights
        self.den[r0 : r0 + h, c0 : c0 + w] += weights
        v = self.valid[r0 : r0 + h, c0 : c0 + w]
        v |= True if valid is None else valid[:h, :w].astype(bool)

    def _advance(self, new_top: int) -> None:
        """Emit rows [top, new_top) -- no later window can touch them -- and slide the band."""
        shift = new_top - self.top
        if shift <= 0:
            return
        if shift >= self.band_rows:
            # The whole band is final; rows below it that no window covered (windows skipped
            # for nodata in a store) are emitted as no-data.
            self._emit(self.band_rows)
            for start in range(
                self.top + self.band_rows, min(new_top, self.height), self.band_rows
            ):
                n = min(self.band_rows, new_top - start, self.height - start)
                empty = np.zeros((self.num.shape[0], n, self.width), np.float32)
                self.sink(start, empty, np.zeros((n, self.width), bool))
            self.num[:] = 0.0
            self.den[:] = 0.0
            self.valid[:] = False
        else:
            self._emit(shift)
            keep = self.band_rows - shift
            # Slide the unfinished rows to the top of the band, in place.
            _slide_up(self.num, shift, keep, axis=1)
            _slide_up(self.den, shift, keep, axis=0)
            _slide_up(self.valid, shift, keep, axis=0)
            self.num[:, keep:] = 0.0
            self.den[keep:] = 0.0
            self.valid[keep:] = False
        self.top = new_top

    def _emit(self, rows: int) -> None:
        rows = min(rows, self.height - self.top)
        if rows <= 0:
            return
        # In chunks of EMIT_ROWS so the sink's temporaries (argmax, encoding) stay small.
        for r0 in range(0, rows, EMIT_ROWS):
            r1 = min(rows, r0 + EMIT_ROWS)
            den = self.den[r0:r1]
            covered = den > 0
            probs = self.num[:, r0:r1] / np.where(covered, den, 1.0)  # (K, n, W): divided once
            self.sink(self.top + r0, probs, self.valid[r0:r1] & covered)

    def finish(self) -> None:
        """Emit every remaining row; afterwards all `height` rows have been handed to the sink."""
        self._advance(self.height)


def _slide_up(a: np.ndarray, shift: int, keep: int, axis: int) -> None:
    """a[rows 0:keep] = a[rows shift:shift+keep] along `axis`, without a band-sized temporary.

    Plain assignment of overlapping ranges makes NumPy copy the whole source first (a transient
    as large as the band: ~70 MB at 16384 px wide); copying in ascending chunks no taller than
    `shift` never reads a row already overwritten, so no temporary is needed.
    """
    step = max(1, min(shift, EMIT_ROWS))
    view = np.moveaxis(a, axis, 0)  # rows first: (band_rows, ...)
    for r in range(0, keep, step):
        n = min(step, keep - r)
        view[r : r + n] = view[r + shift : r + shift + n]
