"""Adapting predictions to a scene's class shares (seg.inference.priors): the EM estimate on
posteriors whose truth is known, and `seg predict` / `seg stitch` through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import distorted, make_checkpoint, synthetic_pair, write_geotiff

from seg.inference.priors import (
    MAX_RATIO,
    MIN_AGREEMENT,
    PriorShift,
    estimate_priors,
    scene_shift,
)

Run = Callable[..., tuple[int, str, str]]


def gaussian_posteriors(prior_test: list[float], prior_train: list[float], n: int) -> tuple:
    """Pixels drawn with `prior_test` from two 1-D Gaussians (means 0 and 2): the exact
    posteriors a calibrated model trained under `prior_train` gives them, and the labels."""
    rng = np.random.default_rng(0)
    y = (rng.random(n) < prior_test[1]).astype(int)
    x = rng.normal(2.0 * y, 1.0)
    lik = np.stack([np.exp(-0.5 * x**2), np.exp(-0.5 * (x - 2.0) ** 2)], axis=1)  # (N, 2)
    post = lik * np.asarray(prior_train)
    return post / post.sum(axis=1, keepdims=True), y


def test_em_recovers_a_shifted_prior_and_fixes_the_decisions() -> None:
    train = [0.4, 0.6]
    post, y = gaussian_posteriors([0.8, 0.2], train, 200_000)
    est = estimate_priors(post, np.asarray(train))
    np.testing.assert_allclose(est, [0.8, 0.2], atol=0.01)
    shift = PriorShift(tuple(train), tuple(float(v) for v in est))
    before = (post.argmax(1) == y).mean()
    adapted = shift.apply(post.T[None, :, :, None].astype(np.float32))[0, :, :, 0].T  # (N, 2)
    after = (adapted.argmax(1) == y).mean()
    assert after > before + 0.03  # the Bayes decision under the true prior
    np.testing.assert_allclose(adapted.sum(axis=1), 1.0, atol=1e-5)


def test_no_shift_leaves_the_prior_and_the_probabilities() -> None:
    train = [0.7, 0.3]
    post, _ = gaussian_posteriors(train, train, 200_000)
    est = estimate_priors(post, np.asarray(train))
    np.testing.assert_allclose(est, train, atol=0.01)
    np.testing.assert_allclose(PriorShift(tuple(train), tuple(est)).factors, 1.0, atol=0.05)


def test_absent_classes_are_kept_and_no_class_vanishes() -> None:
    # Posteriors that never favour class 1: EM alone would drive it to 0.
    post = np.tile([[0.95, 0.05, 0.0]], (1000, 1))
    est = estimate_priors(post, np.asarray([0.5, 0.5, 0.0]))
    assert est[1] >= 0.5 / MAX_RATIO / 1.1 and est[2] == 0.0
    assert est.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="do not match"):
        estimate_priors(post, np.asarray([0.5, 0.5]))


def batch_of(post: np.ndarray) -> list:
    """(N, K) posteriors as one first-pass batch: a window of 4N x 4 pixels, sampled back."""
    from seg.geo.grid import Window

    n, k = post.shape
    probs = np.zeros((1, k, 4 * n, 4), np.float32)
    probs[0, :, ::4, ::4] = post.T[:, :, None]
    return [([Window(0, 0, 4 * n, 4)], probs, [np.ones((4 * n, 4), bool)])]


def test_an_estimate_pinned_at_the_bound_is_not_applied() -> None:
    # A network whose buildings are never confident: EM runs into the bound (the Atlanta case).
    weak = np.tile([[0.97, 0.03]], (500, 1))
    shift = scene_shift(batch_of(weak), (0.94, 0.06))
    assert shift.test == shift.train and shift.estimate is not None
    assert shift.estimate[1] == pytest.approx(0.006, rel=0.05)  # the bound, recorded
    np.testing.assert_allclose(shift.factors, 1.0)
    assert shift.tag()["rejected"] == [round(x, 5) for x in shift.estimate]
    # A shift inside the bound is applied.
    post, _ = gaussian_posteriors([0.8, 0.2], [0.4, 0.6], 20_000)
    kept = scene_shift(batch_of(post), (0.4, 0.6))
    assert kept.estimate is None and kept.test[1] == pytest.approx(0.2, abs=0.02)
    assert "rejected" not in kept.tag()


def test_an_estimate_its_own_decisions_contradict_is_not_applied() -> None:
    """The kampala_wide case: a network that already decides the scene's share (60 % class 1
    against 30 % in training; most pixels confident, a fifth soft) read by EM as one leaning to
    its training share: EM runs past the truth (inside the 10x bound), and the reweighted
    decisions would give every pixel class 1."""
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.6
    confident = rng.random(y.size) < 0.8
    soft_p1 = np.where(y, rng.uniform(0.5, 0.6, y.size), rng.uniform(0.3, 0.45, y.size))
    p1 = np.where(confident, np.where(y, 0.9, 0.1), soft_p1)
    posteriors = np.stack([1 - p1, p1], axis=1)
    train = (0.7, 0.3)
    assert (posteriors.argmax(1) == 1).mean() == pytest.approx(0.6, abs=0.01)  # right already
    shift = scene_shift(batch_of(posteriors), train)
    assert shift.estimate is not None and shift.estimate[1] > 0.8  # EM's overshoot, recorded
    assert shift.test == shift.train and shift.agreement is not None
    assert shift.agreement < MIN_AGREEMENT
    np.testing.assert_allclose(shift.factors, 1.0)  # not applied
    tag = shift.tag()
    assert tag["rejected"] == [round(x, 5) for x in shift.estimate]
    assert tag["agreement"] == [round(shift.agreement, 4)]
    # A calibrated network under a real shift: its decisions make the estimated shares.
    post, _ = gaussian_posteriors([0.4, 0.6], [0.8, 0.2], 20_000)
    kept = scene_shift(batch_of(post), (0.8, 0.2))
    assert kept.estimate is None and kept.test[1] == pytest.approx(0.6, abs=0.02)
    assert kept.agreement is not None and kept.agreement > 0.9


def test_the_decisions_are_judged_on_the_blend_the_mask_is_made_from() -> None:
    """Fine-pass posteriors then the coarse pass's, (N, 2K): the estimate comes from the fine
    pass alone; its decisions are judged on the blend of both, each reweighted. The vegas case
    (row 117): a coarse pass that all but misses a thin class takes it out of the mask."""
    post, _ = gaussian_posteriors([0.6, 0.4], [0.3, 0.7], 20_000)
    fine_only = scene_shift(batch_of(post), (0.3, 0.7))
    assert fine_only.estimate is None and fine_only.test[1] == pytest.approx(0.4, abs=0.02)
    blind = np.tile([[0.98, 0.02]], (len(post), 1))  # the coarse pass: class 1 at 2 %
    both = batch_of(np.concatenate([post, blind], axis=1))
    shift = scene_shift(both, (0.3, 0.7), 1.0 / 3.0)
    assert shift.estimate == pytest.approx(fine_only.test)  # the estimate: the fine pass's
    assert shift.agreement is not None and shift.agreement < MIN_AGREEMENT
    np.testing.assert_allclose(shift.factors, 1.0)  # not applied
    # The same samples with no weight on the coarse pass: the fine pass's verdict.
    unweighted = scene_shift(both, (0.3, 0.7), 0.0)
    assert unweighted.test == fine_only.test and unweighted.agreement == fine_only.agreement


def test_stacked_gives_the_fine_and_the_coarse_probabilities() -> None:
    from seg.inference.coarse_pass import blend, fine_and_coarse, stacked, with_coarse_pass

    def model(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        p1 = 1.0 / (1.0 + np.exp(-batch[:, :1]))  # (B, 1, S, S)
        return np.concatenate([1.0 - p1, p1], axis=1).astype(np.float32)

    x = np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)
    out = stacked(model, 0.5)(x)
    assert out.shape == (2, 4, 128, 128)
    np.testing.assert_allclose(out[:, :2], model(x), rtol=1e-6)
    np.testing.assert_allclose(out[:, 2:], fine_and_coarse(model, 0.5)(x, None)[1], rtol=1e-6)
    assert not np.allclose(out[:, 2:], out[:, :2])
    mask_probs = with_coarse_pass(model, 0.5)(x)
    np.testing.assert_allclose(blend(out[:, :2], out[:, 2:]), mask_probs, rtol=1e-6)


def test_adapted_reweights_what_the_model_gives() -> None:
    from seg.inference.scenes import adapted

    probs = np.random.default_rng(0).dirichlet([1.0, 1.0], size=(2, 8, 8)).transpose(0, 3, 1, 2)
    shift = PriorShift((0.5, 0.5), (0.8, 0.2))
    out = adapted(lambda batch, meta=None: probs.astype(np.float32), shift)(np.zeros((2, 3, 8, 8)))
    np.testing.assert_allclose(out, shift.apply(probs.astype(np.float32)), rtol=1e-6)
    assert out[:, 0].mean() > probs[:, 0].mean() + 0.1  # towards the scene's 80 % class 0


def through_store(
    seg_run: Run, src: Path, ckpt: Path, root: str
) -> tuple[np.ndarray, dict[str, str]]:
    """`seg tile` the scene, `seg predict --store` and `seg stitch`: the mask and its tags."""
    from seg.geo.raster import open_raster

    store, preds, stitched = (f"{root}/{n}" for n in ("ds.zarr", "preds.zarr", "stitched"))
    code, _, err = seg_run("tile", src, "--out", store, "--size", "64", "--stride", "48", "-q")
    assert code == 0, err
    fp32 = ("--precision", "fp32", "--overlap", "16", "-q")
    code, _, err = seg_run("predict", "--store", store, "-k", ckpt, "--out", preds, *fp32)
    assert code == 0, err
    code, _, err = seg_run("stitch", preds, "--out", stitched, "-q")
    assert code == 0, err
    with open_raster(f"{stitched}/s_mask.tif") as m:
        return m.read(1), m.tags()


def test_predict_records_each_scene_estimate_and_stitch_agrees(
    seg_run: Run, tmp_path: Path, root: str
) -> None:
    """A checkpoint that says 1 % of its training pixels were buildings, around random weights
    that see buildings almost everywhere: `seg predict` runs the first pass and EM, which runs
    into the 10x bound, so the estimate is recorded (SEG_PRIORS "rejected") and not applied:
    the mask equals `--no-adapt-priors` and a checkpoint without shares. The same through
    `seg predict --store` + `seg stitch`."""
    torch.set_num_threads(1)
    with_prior = make_checkpoint(tmp_path / "p.pt", class_prior=(0.99, 0.01))
    plain_ckpt = make_checkpoint(tmp_path / "plain.pt")
    image, _ = synthetic_pair(150, 131, 3, 3)
    src = write_geotiff(tmp_path / "s.tif", image)
    fp32 = ("--precision", "fp32", "--overlap", "16", "-q")

    def predict(ckpt: Path, name: str, *extra: str) -> tuple[np.ndarray, dict[str, str]]:
        out = tmp_path / f"{name}.tif"
        code, _, err = seg_run("predict", src, "-k", ckpt, "--out", out, *fp32, *extra)
        assert code == 0, err
        with rasterio.open(out) as m:
            return m.read(1), m.tags()

    adapted, tags = predict(with_prior, "adapted")
    off, off_tags = predict(with_prior, "off", "--no-adapt-priors")
    plain, plain_tags = predict(plain_ckpt, "plain")
    priors = json.loads(tags["SEG_PRIORS"])
    assert priors["train"] == priors["scene"] == [0.99, 0.01]
    assert priors["rejected"][1] >= 0.098  # at least the bound, 10x 1 % (before renormalising)
    assert "SEG_PRIORS" not in off_tags and "SEG_PRIORS" not in plain_tags
    np.testing.assert_array_equal(off, plain)  # the same weights, not adapted
    np.testing.assert_array_equal(adapted, off)  # a pinned estimate is not applied

    from_store, store_tags = through_store(seg_run, src, with_prior, root)
    store_priors = json.loads(store_tags["SEG_PRIORS"])
    np.testing.assert_allclose(store_priors["rejected"], priors["rejected"], atol=0.03)
    assert store_priors["scene"] == priors["scene"]
    assert (from_store == adapted).mean() > 0.97


def test_a_calibrated_estimate_reads_an_unsure_network_right() -> None:
    """A network unsure of itself (log-posteriors x 0.6, as the jittered networks of
    docs/recipe.md row 120 were): EM on its raw posteriors runs a shift from 30 % to 60 % class 1
    on to 76 % (the kampala_wide overshoot); calibrated on held-out pixels of the training shares
    it reads 60 %, and the factors act on the raw probabilities as w ** T."""
    from seg.evaluation.calibration import fit_calibration

    z_val, y_val = distorted(50_000, 0.3, power=0.6, lean=0.0, seed=1)
    cal = fit_calibration(z_val, y_val)
    assert cal is not None
    z, _ = distorted(20_000, 0.6, power=0.6, lean=0.0, seed=2, trained=0.3)
    post = np.exp(z)
    raw = scene_shift(batch_of(post), (0.7, 0.3))
    calibrated = scene_shift(batch_of(post), (0.7, 0.3), calibration=cal.to_json())
    raw_share = (raw.estimate or raw.test)[1]
    assert calibrated.estimate is None and calibrated.test[1] == pytest.approx(0.6, abs=0.03)
    assert raw_share > 0.7  # the raw read overshoots
    w = np.asarray(calibrated.test) / np.asarray(calibrated.train)
    np.testing.assert_allclose(calibrated.factors, w**cal.temperature, rtol=1e-4)
    assert calibrated.tag()["temperature"] == [round(cal.temperature, 4)]
    # The mask's decisions: those of w on p ** (1/T), the network's own lean kept.
    decided = calibrated.apply(post.T[None, :, :, None].astype(np.float32))[0, :, :, 0].T
    own = np.exp(z / cal.temperature) * w
    assert (decided.argmax(1) == own.argmax(1)).mean() > 0.999


def test_predict_and_stitch_read_the_shares_through_the_checkpoint_calibration(
    seg_run: Run, tmp_path: Path, root: str
) -> None:
    """A checkpoint with a calibration: `seg predict` and `seg predict --store` + `seg stitch`
    estimate against the calibration's reference shares (not the training labels') and record
    its temperature; an inconsistent calibration is refused in one line."""
    torch.set_num_threads(1)
    cal = {"temperature": 2.0, "bias": [0.0, 0.0], "prior": [0.6, 0.4]}
    ckpt = make_checkpoint(tmp_path / "c.pt", class_prior=(0.9, 0.1), calibration=cal)
    image, _ = synthetic_pair(150, 131, 3, 3)
    src = write_geotiff(tmp_path / "s.tif", image)
    fp32 = ("--precision", "fp32", "--overlap", "16", "-q")
    out = tmp_path / "m.tif"
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", out, *fp32)
    assert code == 0, err
    with rasterio.open(out) as m:
        priors = json.loads(m.tags()["SEG_PRIORS"])
    assert priors["train"] == [0.6, 0.4] and priors["temperature"] == [2.0]
    stitched_priors = json.loads(through_store(seg_run, src, ckpt, root)[1]["SEG_PRIORS"])
    assert stitched_priors["train"] == [0.6, 0.4] and stitched_priors["temperature"] == [2.0]
    wrong = {**cal, "bias": [0.0]}
    bad = make_checkpoint(tmp_path / "bad.pt", class_prior=(0.9, 0.1), calibration=wrong)
    code, _, err = seg_run("predict", src, "-k", bad, "--out", tmp_path / "b.tif", *fp32)
    assert code == 1 and "calibration" in err and len(err.strip().splitlines()) == 1, err
