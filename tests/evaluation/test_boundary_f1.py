"""Boundary F1 (seg.evaluation.metrics): outlines matched within a pixel tolerance."""

from __future__ import annotations

import numpy as np

from seg.evaluation.metrics import boundary, boundary_counts, boundary_f1


def square(offset: int = 0, size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[8 + offset : 20 + offset, 8 + offset : 20 + offset] = 1
    return mask


def test_boundary_is_the_outline_only() -> None:
    b = boundary(square() == 1)
    assert b.sum() == 4 * 12 - 4  # the ring of a 12x12 square
    assert not b[9:19, 9:19].any()
    # A region touching the image edge has no outline along that edge.
    full = np.ones((5, 5), bool)
    assert not boundary(full).any()


def test_tolerance_decides_what_counts() -> None:
    truth, shifted = square(), square(offset=2)
    assert boundary_f1(boundary_counts(truth, truth, 1, tolerance=0)) == 1.0
    assert boundary_f1(boundary_counts(shifted, truth, 1, tolerance=0)) < 0.2
    assert boundary_f1(boundary_counts(shifted, truth, 1, tolerance=2)) == 1.0
    assert boundary_f1(boundary_counts(np.zeros_like(truth), truth, 1)) == 0.0


def test_ignore_pixels_are_left_out_and_counts_add_up() -> None:
    truth, pred = square(), square(offset=3)
    truth_ignored = truth.copy()
    truth_ignored[:, 14:] = 255  # hide the right half of the scene
    partial = boundary_counts(pred, truth_ignored, 1, tolerance=1)
    assert partial[1] < boundary_counts(pred, truth, 1, tolerance=1)[1]
    # Counts from several scenes sum into one score.
    both = boundary_counts(truth, truth, 1) + boundary_counts(pred, truth, 1, tolerance=1)
    f1 = boundary_f1(both)
    assert boundary_f1(boundary_counts(pred, truth, 1, tolerance=1)) < f1 < 1.0
