"""A scene's windows in batches, prepared exactly as the training data is
(`seg.data.window_prep`): what every pass of `seg predict` feeds the network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from seg.data.window_prep import Normalisation, prepare_window
from seg.geo.grid import Window, windows
from seg.geo.raster import SceneInfo, read_strip

# read(row_off, height, col_off, width) -> image (C, height, width) raw pixels, valid bool
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


def window_reader(ds: Any, info: SceneInfo) -> WindowReader:
    """The reader of an open raster `ds` (its bands and nodata as `info` says)."""

    def read(row: int, height: int, col: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return read_strip(ds, info, row, height, col_off=col, width=width)

    return read


def batches(
    read: WindowReader,
    height: int,
    width: int,
    *,
    size: int,
    stride: int,
    norm: Normalisation,
    batch_size: int,
) -> Iterator[tuple[list[Window], np.ndarray, list[np.ndarray]]]:
    """Windows in row-major order, grouped in batches: (windows, (B, C, S, S) float32, valid)."""
    grid = windows(height, width, size, stride)
    wins: list[Window] = []
    xs: list[np.ndarray] = []
    valids: list[np.ndarray] = []
    for win in grid:
        # One read per window: input memory stays per window, whatever the scene's width;
        # GDAL's block cache (seg.inference.scenes.block_cache) serves the overlap with the
        # previous window.
        image, v = read(win.row_off, win.height, win.col_off, win.width)  # (C, h, w), (h, w)
        wins.append(win)
        xs.append(prepare_window(image, v, norm, size))  # (C, S, S), as in training
        valids.append(v)
        if len(wins) == batch_size:
            yield wins, np.stack(xs), valids
            wins, xs, valids = [], [], []
    if wins:
        yield wins, np.stack(xs), valids


def predicted(
    items: Iterator[tuple[list[Window], np.ndarray, list[np.ndarray]]],
    model: Callable[[np.ndarray], np.ndarray],
    advance: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[Window], np.ndarray, list[np.ndarray]]]:
    """(windows, prepared (B, C, S, S), valid) -> (windows, probabilities (B, K, S, S), valid)."""
    for wins, x, valids in items:
        yield wins, model(x), valids
        if advance is not None:
            advance(len(wins))
