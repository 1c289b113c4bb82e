"""Properties of the pure window arithmetic in seg/geo/grid.py (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg.errors import ConfigError
from seg.geo.grid import axis_offsets, check_geometry, window_count, windows

sizes = st.sampled_from([32, 64, 96, 128, 256])


@st.composite
def geometry(draw: st.DrawFn) -> tuple[int, int, int, int]:
    size = draw(sizes)
    stride = draw(st.integers(max(1, size // 4), size))
    height = draw(st.integers(1, 400))
    width = draw(st.integers(1, 400))
    return height, width, size, stride


@settings(max_examples=150, deadline=None)
@given(geometry())
def test_every_pixel_covered_and_windows_in_bounds(g: tuple[int, int, int, int]) -> None:
    height, width, size, stride = g
    cover = np.zeros((height, width), np.int32)
    grid = windows(height, width, size, stride)
    assert window_count(height, width, size, stride) == len(grid)  # the progress bar's total
    for w in grid:
        assert w.row_off >= 0 and w.col_off >= 0
        assert w.row_off + w.height <= height and w.col_off + w.width <= width
        # A window is full-size unless the scene is smaller than a window along that axis.
        assert w.height == min(size, height) and w.width == min(size, width)
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert cover.min() >= 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), sizes, st.data())
def test_axis_offsets_count_order_and_last_shifted_in(
    length: int, size: int, data: st.DataObject
) -> None:
    stride = data.draw(st.integers(1, size))
    offs = axis_offsets(length, size, stride)
    assert offs[0] == 0
    assert offs == sorted(set(offs))
    if length <= size:
        assert offs == [0]
        return
    # Last window ends exactly at the border; the others follow the stride.
    assert offs[-1] == length - size
    assert all(b - a == stride for a, b in itertools.pairwise(offs[:-1]))
    assert 0 < offs[-1] - offs[-2] <= stride
    assert len(offs) == -(-(length - size) // stride) + 1  # ceil((L - S) / stride) + 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 31), st.integers(1, 31), sizes)
def test_scene_smaller_than_window_is_one_padded_window(h: int, w: int, size: int) -> None:
    (only,) = windows(h, w, size, size)
    assert (only.row_off, only.col_off, only.height, only.width) == (0, 0, h, w)


def test_geometry_checks() -> None:
    check_geometry(512, 256)
    check_geometry(256, 512, allow_gaps=True)
    for size, stride in [(100, 100), (0, 10), (512, 0), (512, -1), (256, 512)]:
        with pytest.raises(ConfigError):
            check_geometry(size, stride)
