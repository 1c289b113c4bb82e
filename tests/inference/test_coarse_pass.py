"""The coarse pass of `seg predict`: a second look at half the network's resolution, blended in
where its pixels stay 2 m or finer; the class shares are still estimated from the fine pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff
from rasterio.transform import from_origin

from seg.checkpoint import CheckpointInfo
from seg.inference.coarse_pass import WEIGHT, fits, wanted, with_coarse_pass

Run = Callable[..., tuple[int, str, str]]


def info(scale: float | None) -> CheckpointInfo:
    model = {"name": "unet_mobilenetv2", "in_channels": 3, "num_classes": 2}
    if scale is not None:
        model["scale"] = scale
    return CheckpointInfo(
        model=model, class_names=("background", "building"), bands=(1, 2, 3), mean=(0.0,) * 3,
        std=(1.0,) * 3, size=512,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("gsd", "scale", "expected"),
    [
        (0.075, 0.5, True),  # kampala: the coarse pass at 0.3 m
        (0.3, 0.5, True),  # vegas: 1.2 m
        (0.5, 0.5, True),  # 2 m: at the bound
        (1.0, 0.5, False),  # 4 m
        (5.0, 1.0, False),  # NAIP: 10 m, where it lost
        (None, 0.5, True),  # no GSD, a network at half resolution: labels fine enough
        (None, 1.0, False),  # no GSD, at full resolution: labels too fine to halve
        (0.5, None, True),  # an old checkpoint without a scale ran at full resolution: 1 m
    ],
)
def test_auto_runs_where_the_coarse_pixels_stay_2_m_or_finer(
    gsd: float | None, scale: float | None, expected: bool
) -> None:
    assert wanted("auto", info(scale), gsd) is expected
    assert wanted("on", info(scale), gsd) and not wanted("off", info(scale), gsd)


def test_blend_is_two_thirds_fine_one_third_the_2x2_means_resized_back() -> None:
    seen: list[np.ndarray] = []

    def model(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """Class 0 certain at the sizes given, class 1 certain at half size."""
        seen.append(batch)
        b, _, h, w = batch.shape
        out = np.zeros((b, 2, h, w), np.float32)
        out[:, 0 if h in (64, 48) else 1] = 1.0
        return out

    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    probs = with_coarse_pass(model, scale=1.0)(x)
    assert probs.shape == (2, 2, 64, 64)
    np.testing.assert_allclose(probs[:, 0], 1.0 - WEIGHT, atol=1e-6)
    np.testing.assert_allclose(probs[:, 1], WEIGHT, atol=1e-6)
    assert [s.shape for s in seen] == [(2, 3, 64, 64), (2, 3, 32, 32)]
    np.testing.assert_allclose(seen[1][0, 1, 3, 5], x[0, 1, 6:8, 10:12].mean(), rtol=1e-5)

    seen.clear()  # 48 px halved at scale 1 is 24 px: not a whole network stride, fine pass only
    assert not fits(48, 48, 1.0) and fits(128, 128, 0.5) and not fits(128, 64, 0.5)
    np.testing.assert_array_equal(with_coarse_pass(model, 1.0)(x[:, :, :48, :48])[:, 1], 0.0)
    assert len(seen) == 1


def test_the_class_share_reweighting_acts_on_each_pass_before_the_blend() -> None:
    """Reweighting is not linear (it renormalises), so its place matters: on each pass, then
    blended (rows 108, 117: on the blend it cost thin classes)."""
    from seg.inference.priors import PriorShift

    def model(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """Undecided at full size, class 0 at 90 % at half size."""
        b, _, h, w = batch.shape
        p0 = 0.5 if h == 64 else 0.9
        return np.stack([np.full((b, h, w), p0), np.full((b, h, w), 1.0 - p0)], 1).astype(
            np.float32
        )

    shift = PriorShift((0.5, 0.5), (0.1, 0.9))  # factors 0.2 and 1.8
    x = np.zeros((1, 3, 64, 64), np.float32)
    probs = with_coarse_pass(model, 1.0, shift.apply)(x)
    # fine 0.5 / 0.5 -> 0.1 / 0.9; coarse 0.9 / 0.1 -> 0.5 / 0.5; blended: 0.9 * 2/3 + 0.5 / 3
    np.testing.assert_allclose(probs[:, 1], 0.9 * (1 - WEIGHT) + 0.5 * WEIGHT, atol=1e-5)
    on_the_blend = shift.apply(with_coarse_pass(model, 1.0)(x))
    assert abs(float(on_the_blend[0, 1, 0, 0]) - float(probs[0, 1, 0, 0])) > 0.05


def test_predict_blends_the_coarse_pass_on_fine_imagery_only(seg_run: Run, tmp_path: Path) -> None:
    """Through the CLI: on 0.5 m pixels the default is the coarse pass (the same probabilities as
    `on`, others than `off`); on 5 m pixels it is `off`. The class-share estimate, from the fine
    pass, is the same with and without it. A mode that does not exist is one line."""
    ckpt = make_checkpoint(tmp_path / "best.pt", class_prior=(0.7, 0.3))
    image, _ = synthetic_pair(96, 130, 3, seed=2)
    fine = write_geotiff(tmp_path / "fine.tif", image)
    coarse = write_geotiff(tmp_path / "coarse.tif", image, transform=from_origin(5e5, 4e6, 5, 5))

    def predict(src: Path, *flags: str) -> tuple[np.ndarray, dict[str, str]]:
        out = tmp_path / f"{src.stem}{''.join(flags)}" / "mask.tif"
        code, _, err = seg_run(
            "predict", src, "-k", ckpt, "--out", out, "--probabilities", "-q", *flags
        )
        assert code == 0, err
        with rasterio.open(out) as ds:
            tags = ds.tags()
        with rasterio.open(out.with_name("mask_probs.tif")) as ds:
            return ds.read(), tags

    default, tags = predict(fine)
    on, on_tags = predict(fine, "--coarse-pass", "on")
    off, off_tags = predict(fine, "--coarse-pass", "off")
    np.testing.assert_array_equal(default, on)
    assert np.abs(default.astype(int) - off.astype(int)).max() > 2  # uint8 probabilities
    assert json.loads(tags["SEG_COARSE_PASS"]) is True
    assert json.loads(off_tags["SEG_COARSE_PASS"]) is False
    assert json.loads(on_tags["SEG_PRIORS"]) == json.loads(off_tags["SEG_PRIORS"])

    default, tags = predict(coarse)
    np.testing.assert_array_equal(default, predict(coarse, "--coarse-pass", "off")[0])
    assert json.loads(tags["SEG_COARSE_PASS"]) is False

    out = tmp_path / "bad" / "mask.tif"
    code, _, err = seg_run("predict", fine, "-k", ckpt, "-o", out, "--coarse-pass", "sideways")
    assert one_line_error(code, err) and "'auto', 'on', 'off'" in err, err
    assert not out.exists()
