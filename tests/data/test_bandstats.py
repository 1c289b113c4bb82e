"""Band statistics: the percentiles of a percentile stretch, kept per scene."""

from __future__ import annotations

import numpy as np
import pytest

from seg.data.bandstats import BandStats
from seg.data.window_prep import STRETCH, Normalisation
from seg.errors import StoreError


def _accumulate(image: np.ndarray, valid: np.ndarray, rows: int) -> BandStats:
    stats = BandStats.empty(image.shape[0])
    for r in range(0, image.shape[1], rows):
        stats.update(image[:, r : r + rows], valid[r : r + rows])
    return stats


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_percentiles_are_exact_and_ignore_invalid_pixels(dtype: str) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    image = rng.integers(max(info.min, -3000), min(info.max, 3000), (2, 61, 47)).astype(dtype)
    valid = rng.random((61, 47)) > 0.2
    image[:, ~valid] = info.max  # invalid pixels would drag the 98th percentile to the top
    got = _accumulate(image, valid, rows=9).percentiles()
    want = np.percentile(image[:, valid], [2, 98], axis=1, method="inverted_cdf")  # (2, C)
    np.testing.assert_array_equal(got, want)


def test_float_percentiles_are_within_a_bfloat16_step_and_do_not_depend_on_strips() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(0.1, 0.05, (3, 80, 50)).astype(np.float32)  # reflectances, some < 0
    image[1] *= -1
    valid = np.ones((80, 50), bool)
    got = _accumulate(image, valid, rows=80).percentiles()
    want = np.percentile(image.reshape(3, -1), [2, 98], axis=1, method="inverted_cdf")
    np.testing.assert_allclose(got, want, rtol=2**-7)
    assert (np.abs(got) <= np.abs(want)).all()  # a bin stands for its value cut toward zero
    np.testing.assert_array_equal(_accumulate(image, valid, rows=7).percentiles(), got)


def test_a_scene_keeps_its_percentiles_and_merged_scenes_have_none() -> None:
    image = np.arange(2 * 10 * 10, dtype=np.uint8).reshape(2, 10, 10)
    stats = _accumulate(image, np.ones((10, 10), bool), rows=4)
    back = BandStats.from_json(stats.to_json())
    np.testing.assert_array_equal(back.percentiles(), stats.percentiles())
    np.testing.assert_array_equal(back.percentiles(), [[1, 101], [97, 197]])
    assert back.merge(back).percentiles() is None
    assert "p02" in stats.to_json() and "p02" not in back.merge(back).to_json()


def test_a_percentile_stretch_maps_the_percentiles_to_plus_minus_stretch_and_clips() -> None:
    image = np.arange(100, dtype=np.uint8).reshape(1, 10, 10) + 50
    stats = _accumulate(image, np.ones((10, 10), bool), rows=10)
    fallback = Normalisation(np.zeros(1), np.ones(1))
    norm = Normalisation.for_scene("percentile", stats, fallback)
    out = norm.apply(image)[0]
    assert out[0, 1] == -STRETCH and out[9, 7] == STRETCH  # 51 and 147: the 2nd and 98th
    assert out.min() == -STRETCH and out.max() == STRETCH  # 50 and 148, 149 clipped
    assert Normalisation.for_scene("global", stats, fallback) is fallback
    # a store tiled before percentiles were kept: a fix to run, not a crash
    kept = stats.to_json()
    old = BandStats.from_json({k: v for k, v in kept.items() if k not in ("p02", "p98")})
    with pytest.raises(StoreError, match="re-run `seg tile`"):
        Normalisation.for_scene("percentile", old, fallback)
