"""Pure window arithmetic: which S x S windows cover an H x W scene.

Rules (property-tested in tests/test_grid.py):
- every pixel is covered;
- windows start every `stride` pixels; the last row/column of windows is shifted in so that it
  ends exactly at the scene border instead of hanging past it;
- a scene smaller than a window along an axis gets one window at offset 0 along that axis, whose
  valid extent is the scene size (the rest is padding, marked ignore by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seg.errors import ConfigError


@dataclass(frozen=True)
class Window:
    """A window in scene pixels: offsets plus the valid (unpadded) height and width."""

    row_off: int
    col_off: int
    height: int
    width: int

    def to_rasterio(self) -> Any:
        """The same window as rasterio spells it: Window(col_off, row_off, width, height).

        seg's own order is (row, col, height, width), like numpy's (rows, cols); this is the
        one place that converts, so the two orders can never be mixed up at a call site."""
        from rasterio.windows import Window as RioWindow

        return RioWindow(self.col_off, self.row_off, self.width, self.height)

    def transform(self, scene_transform: Any) -> Any:
        """The window's affine georeference, from the scene's."""
        from rasterio.windows import transform

        return transform(self.to_rasterio(), scene_transform)


def axis_offsets(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis of `length` pixels for windows of `size` every `stride`."""
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if size <= 0 or stride <= 0:
        raise ValueError("size and stride must be positive")
    if length <= size:
        return [0]
    last = length - size
    offsets = list(range(0, last, stride))
    if not offsets or offsets[-1] != last:
        offsets.append(last)
    return offsets


def windows(height: int, width: int, size: int, stride: int) -> list[Window]:
    """Row-major windows covering a `height` x `width` scene."""
    rows = axis_offsets(height, size, stride)
    cols = axis_offsets(width, size, stride)
    return [Window(r, c, min(size, height - r), min(size, width - c)) for r in rows for c in cols]


def window_count(height: int, width: int, size: int, stride: int) -> int:
    """How many windows `windows` yields, without building them."""
    return len(axis_offsets(height, size, stride)) * len(axis_offsets(width, size, stride))


def check_geometry(size: int, stride: int, allow_gaps: bool = False) -> None:
    """Refuse window settings a model or the coverage rules cannot use."""
    if size <= 0 or size % 32:
        raise ConfigError(
            f"window size {size} is not a positive multiple of 32 (the UNet downsamples 5 times);"
            " use e.g. 256 or 512"
        )
    if stride <= 0:
        raise ConfigError(f"stride {stride} must be positive; use {size} (no overlap) or less")
    if stride > size and not allow_gaps:
        raise ConfigError(
            f"stride {stride} is larger than the window size {size}, which leaves gaps between"
            " windows; use a stride <= size, or pass --allow-gaps if gaps are intended"
        )
