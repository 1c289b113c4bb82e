"""Bias-corrected temperature scaling (seg.evaluation.calibration) on posteriors whose truth
is known: it recovers the distortion, describes the held-out shares, and survives JSON."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import distorted

from seg.evaluation.calibration import MIN_PIXELS, Calibration, fit_calibration


def test_the_fit_undoes_a_known_distortion() -> None:
    z, y = distorted(100_000, 0.3, power=3.0, lean=1.5)
    cal = fit_calibration(z, y)
    assert cal is not None
    assert cal.temperature == pytest.approx(3.0, rel=0.05)
    # bias per class, centred: the lean of 1.5 / 3 on class 1 taken back
    assert cal.bias[1] - cal.bias[0] == pytest.approx(-0.5, abs=0.05)
    assert cal.prior[1] == pytest.approx(float(y.mean()), abs=0.005)  # the held-out share
    exact, _ = distorted(100_000, 0.3, power=1.0, lean=0.0)
    np.testing.assert_allclose(np.exp(cal.log_probs(z)), np.exp(exact), atol=0.03)


def test_probabilities_and_log_probabilities_agree_and_sum_to_one() -> None:
    z, y = distorted(5_000, 0.5, power=0.5, lean=-1.0, seed=1)
    cal = fit_calibration(z, y)
    assert cal is not None and cal.temperature < 1.0  # an under-sure network is sharpened
    p = cal.probs(np.exp(z))
    np.testing.assert_allclose(p, np.exp(cal.log_probs(z)), atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


def test_too_few_pixels_fit_nothing_and_an_unseen_class_keeps_its_bias() -> None:
    z, y = distorted(MIN_PIXELS - 1, 0.3, power=2.0, lean=0.0)
    assert fit_calibration(z, y) is None
    z3 = np.concatenate([z, np.full((len(z), 1), -5.0)], axis=1)  # a third class, never true
    cal = fit_calibration(np.concatenate([z3, z3]), np.concatenate([y, y]))
    assert cal is not None and cal.bias[2] == 0.0


def test_json_round_trip() -> None:
    cal = Calibration(2.5, (0.25, -0.25), (0.7, 0.3))
    again = Calibration.from_json(cal.to_json())
    assert again == cal
