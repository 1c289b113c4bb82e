"""Class priors of a test scene, and a network's probabilities adapted to them (label shift).

A network trained on scenes where 59 % of the pixels are buildings predicts as if every scene
were like that; a test scene with 24 % buildings gets too many. Given the class shares of the
training labels (recorded in the checkpoint as `class_prior`), the shares of a new scene are
estimated without labels by EM (Saerens, Latinne & Decaestecker 2002): reweight each pixel's
posterior by test prior / training prior, take the mean posterior as the new test prior,
repeat. `seg predict` runs a first pass over non-overlapping windows to draw the pixels
(`sample_posteriors`), then blends `PriorShift`-adapted probabilities as usual.

Measured (docs/recipe.md row 27): +0.035 mIoU on vegas (train 4.7 % roads, test 1.3 %) and
+0.010 on kampala, from the same checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg.evaluation.calibration import Calibration
from seg.geo.grid import Window

MIN_PRIOR = 1e-6  # a class (almost) absent from training is left as it is
# Bounds on test prior / training prior: EM on a miscalibrated network can drive a class it
# under-predicts towards zero; no class is scaled by more than this either way.
MAX_RATIO = 10.0
# A trustworthy estimate describes the mask it makes: the reweighted posteriors' decisions
# (argmax) give each class about the share EM estimated for it. Where a class's decided share
# and its estimate differ by more than this factor either way, the posteriors are not calibrated
# enough to be read as shares and the scene is left unadapted. docs/recipe.md rows 114 and 120:
# every estimate that helped agreed at 0.797 or more (on 40-odd scene estimates of 25
# checkpoints); those at 0.62, 0.73 and 0.77 cost 0.36, 0.20 and 0.06 mIoU, one at 0.75 was
# level (one at 0.82 still cost 0.016, row 121). A scene it refuses is predicted as without the
# reweighting (what most tools do anyway).
MIN_AGREEMENT = 0.78
AGREEMENT_MIN_SHARE = 0.01  # a class under 1 % of the scene is judged by too few pixels
PIXEL_STEP = 4  # every 4th pixel of every 4th row of the first pass feeds the estimate
# (N, K) float64 is ~100 MB for K = 6; with the coarse pass the samples are (N, 2K) and judging
# them holds three (N, K) float64 arrays at once: ~400 MB at most for K = 6 (by their sizes).
MAX_SAMPLES = 2_000_000
# One batch of the first pass: (windows, probabilities (B, K or 2K, S, S), valid masks [(h, w)]).
Batch = tuple[list[Window], np.ndarray, list[np.ndarray]]


def ratios(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per-class test prior / training prior; 1 where the class is (almost) absent in training."""
    return np.where(train >= MIN_PRIOR, test / np.maximum(train, MIN_PRIOR), 1.0)


def reweighted(probs: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Probabilities with classes on axis 1, (N, K) or (B, K, S, S), times per-class `factors`
    (K,) and renormalised over K; the dtype follows `probs` and `factors`."""
    q = probs * factors.reshape((1, -1) + (1,) * (probs.ndim - 2))
    return q / np.maximum(q.sum(axis=1, keepdims=True), 1e-12)


def estimate_priors(
    posteriors: np.ndarray,
    train_prior: np.ndarray,
    *,
    iterations: int = 100,
    tol: float = 1e-6,
) -> np.ndarray:
    """(N, K) posteriors under `train_prior` (K,) -> the test scene's class priors (K,) by EM.

    Classes with a training prior below MIN_PRIOR keep their share; the ratio to the
    training prior stays within [1 / MAX_RATIO, MAX_RATIO]."""
    p = np.asarray(posteriors, np.float64)
    prior = np.asarray(train_prior, np.float64)
    if p.ndim != 2 or p.shape[1] != prior.shape[0]:
        raise ValueError(f"posteriors {p.shape} do not match {prior.shape[0]} class priors")
    if len(p) == 0:
        return prior.copy()
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    active = prior >= MIN_PRIOR
    test = prior.copy()
    for _ in range(iterations):
        q = reweighted(p, ratios(test, prior))  # (N, K) posteriors under the current test prior
        low, high = prior / MAX_RATIO, prior * MAX_RATIO
        new = np.where(active, np.clip(q.mean(axis=0), low, high), prior)
        new /= new.sum()
        done = float(np.abs(new - test).max()) < tol
        test = new
        if done:
            break
    return test


@dataclass(frozen=True)
class PriorShift:
    """Per-class factors test prior / training prior, applied to a network's probabilities."""

    train: tuple[float, ...]
    test: tuple[float, ...]
    # Set when EM's estimate was not used (test == train then): pinned at the bound, or its
    # decisions disagreed with it (`agreement` below MIN_AGREEMENT).
    estimate: tuple[float, ...] | None = None
    agreement: float | None = None
    # The calibration's temperature where the shares were estimated on calibrated posteriors
    # (p ** (1/T) up to the bias): their factors w act on the network's own probabilities as
    # w ** T, which makes the same decisions as w on p ** (1/T) without the bias, so an
    # unshifted scene keeps the network's own decisions.
    power: float = 1.0

    @property
    def factors(self) -> np.ndarray:
        w = ratios(np.asarray(self.test), np.asarray(self.train)) ** self.power
        return w.astype(np.float32)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """(B, K, S, S) probabilities -> the same reweighted and renormalised over K."""
        return reweighted(probs, self.factors)

    def tag(self) -> dict[str, list[float]]:
        """What the mask's SEG_PRIORS tag records."""
        tag = {
            "train": [round(x, 5) for x in self.train],
            "scene": [round(x, 5) for x in self.test],
        }
        if self.estimate is not None:  # not trusted: recorded, not applied
            tag["rejected"] = [round(x, 5) for x in self.estimate]
        if self.agreement is not None:
            tag["agreement"] = [round(self.agreement, 4)]
        if self.power != 1.0:
            tag["temperature"] = [round(self.power, 4)]
        return tag


def sample_posteriors(batches: Iterable[Batch], num_classes: int) -> np.ndarray:
    """A first prediction pass -> (N, K) posteriors at every PIXEL_STEP-th valid pixel."""
    parts: list[np.ndarray] = []
    n = 0
    for wins, probs, valids in batches:
        for win, p, v in zip(wins, probs, valids, strict=True):
            h, w = win.height, win.width  # arrays may be padded beyond the window
            keep = np.asarray(v[:h:PIXEL_STEP, :w:PIXEL_STEP], bool)
            # (K, h', w') at the sampled pixels -> (n, K) where the scene has data
            picked = p[:, :h:PIXEL_STEP, :w:PIXEL_STEP][:, keep].T
            parts.append(picked.astype(np.float32))
            n += len(picked)
        if n >= MAX_SAMPLES:
            break
    if not parts:
        return np.zeros((0, num_classes), np.float32)
    return np.concatenate(parts)[:MAX_SAMPLES]


def pinned(test: np.ndarray, train: np.ndarray) -> bool:
    """Whether an estimate stopped at the MAX_RATIO bound for some class."""
    r = ratios(test, train)[train >= MIN_PRIOR]
    return bool((r <= 1.02 / MAX_RATIO).any() or (r >= MAX_RATIO / 1.02).any())


def agreement(
    posteriors: np.ndarray, test: np.ndarray, train: np.ndarray, coarse_weight: float = 0.0
) -> float:
    """(N, K) posteriors under `train` reweighted to `test` (or (N, 2K): the fine pass's, then
    the coarse pass's, each reweighted, then blended with `coarse_weight` on the coarse): the
    smallest, over classes of at least AGREEMENT_MIN_SHARE, of (share the argmax decides) /
    (estimated share), or its inverse where that is smaller; 1.0 = the decisions make the
    shares EM estimated."""
    k = len(test)
    judged = (test >= AGREEMENT_MIN_SHARE) & (train >= MIN_PRIOR)
    if len(posteriors) == 0 or not judged.any():
        return 1.0
    p = np.asarray(posteriors, np.float64)
    factors = ratios(test, train)
    made = reweighted(p[:, :k], factors)
    if p.shape[1] == 2 * k:
        coarse = reweighted(p[:, k:], factors)
        made = (1.0 - coarse_weight) * made + coarse_weight * coarse
    decided = np.bincount(made.argmax(axis=1), minlength=k) / len(made)
    r = decided[judged] / test[judged]
    return float(np.minimum(r, 1.0 / np.maximum(r, 1e-12)).min())


def scene_shift(
    batches: Iterable[Batch],
    train_prior: tuple[float, ...],
    coarse_weight: float = 0.0,
    calibration: dict[str, Any] | None = None,
) -> PriorShift:
    """The `PriorShift` of one scene from a first pass over its windows: probabilities
    (B, K, S, S), or (B, 2K, S, S) where the coarse pass runs (the fine pass's, then the coarse
    pass's; the mask blends them with `coarse_weight` on the coarse). With the checkpoint's
    `calibration` (seg.evaluation.calibration) EM reads calibrated posteriors against the
    held-out pixels' shares instead of the raw ones against the training labels' shares.

    An estimate the posteriors cannot support is not trusted and the scene is left unadapted:
    - pinned at the bound: the network's posteriors for a class are too weak to be read as
      shares (SpaceNet Atlanta: buildings 5.6 % in training, 2.2 % in the test scene, EM drove
      them to the 0.56 % bound and building IoU from 0.066 to 0.008; docs/recipe.md row 35);
    - its decisions disagree with it (`agreement` < MIN_AGREEMENT): a network that already
      predicts the scene's shares, read as one leaning to its training shares (kampala_wide:
      buildings 24 % in training, 59 % in the scene, predicted 63 %; EM estimated 91 % and the
      mask came out 97 % buildings, mIoU 0.687 -> 0.324; docs/recipe.md rows 111, 114)."""
    k = len(train_prior)
    sampled = sample_posteriors(batches, k)
    cal = Calibration.from_json(calibration) if calibration else None
    if cal is not None:  # each pass's posteriors calibrated alike: (N, K) or (N, 2K)
        parts = [cal.probs(sampled[:, i : i + k]) for i in range(0, sampled.shape[1], k)]
        sampled = np.concatenate(parts, axis=1)
    prior = np.asarray(cal.prior if cal else train_prior, np.float64)
    # The estimate comes from the fine pass alone (the coarse pass's softer posteriors would
    # read as rarer classes); the decisions are judged on the blend of both passes, each
    # reweighted, which is what the mask is made from (docs/recipe.md row 117).
    test = estimate_priors(sampled[:, :k], prior)
    train = tuple(float(x) for x in prior)
    estimate = tuple(float(x) for x in test)
    power = cal.temperature if cal else 1.0
    if pinned(test, prior):
        return PriorShift(train, train, estimate=estimate, power=power)
    agree = agreement(sampled, test, prior, coarse_weight)
    if agree < MIN_AGREEMENT:
        return PriorShift(train, train, estimate=estimate, agreement=agree, power=power)
    return PriorShift(train, estimate, agreement=agree, power=power)
