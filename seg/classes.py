"""Class ids every room agrees on: the ignore label, the mask's nodata value, the colours.

One home for these values, so the store, the losses, the metrics and the written masks can
never disagree about what 255 means or which colour a class gets.
"""

from __future__ import annotations

import numpy as np

# A label pixel that trains and scores nothing: no data under it, window padding, or unlabelled.
IGNORE = 255
# What a written mask holds where the scene has no data (the same value, by design).
NODATA = IGNORE

# A few distinct colours, class id -> RGB, so a mask reads at a glance in QGIS, overlays and
# TensorBoard previews (class 0, usually background, is black).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
)


def colour(class_id: int) -> tuple[int, int, int]:
    """The RGB colour of `class_id` (the palette repeats for many classes)."""
    return PALETTE[class_id % len(PALETTE)]


def colour_mask(mask: np.ndarray, ignore: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB; IGNORE gets the colour `ignore`."""
    lut = np.array([colour(i) for i in range(256)], np.uint8)  # (256, 3)
    lut[IGNORE] = ignore
    return lut[np.asarray(mask, np.uint8)]
