"""`loss.class_weights: auto`: rare classes weigh more, measured from the training labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from train_helpers import seg_inprocess, train_args

from seg.training.class_balance import MAX_RATIO, balanced_weights


def test_weights_follow_the_inverse_square_root_and_keep_the_loss_scale() -> None:
    freq = np.array([0.97, 0.03])
    w = np.array(balanced_weights(freq))
    assert w[1] / w[0] == pytest.approx(np.sqrt(0.97 / 0.03), rel=1e-3)
    assert float((freq * w).sum()) == pytest.approx(1.0, abs=1e-3)  # mean weight per pixel


def test_a_vanishing_or_absent_class_is_capped() -> None:
    w = balanced_weights(np.array([0.9999, 0.0001, 0.0]))
    assert w[1] / w[0] == pytest.approx(MAX_RATIO, rel=1e-3) and w[2] == w[1]


def test_a_run_measures_its_weights_and_saves_them(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=2)
    out = tmp_path / "run"
    args = train_args(store, out, "train.epochs=1", "train.steps_per_epoch=1",
                      "augment.crop=null", "loss.class_weights=auto")  # fmt: skip
    code, err = seg_inprocess(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "class weights (auto): background" in err
    saved = yaml.safe_load((out / "config.yaml").read_text())["loss"]["class_weights"]
    assert isinstance(saved, list) and len(saved) == 2 and all(w > 0 for w in saved)
    # The same measurement is kept in the checkpoint for seg predict's prior adaptation.
    from seg.checkpoint import read_checkpoint

    info, _ = read_checkpoint(str(out / "last.pt"))
    assert info.class_prior is not None and sum(info.class_prior) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < info.class_prior[1] < 1.0
    w = np.asarray(saved)
    prior = np.asarray(info.class_prior)
    assert w[1] / w[0] == pytest.approx(np.sqrt(prior[0] / prior[1]), rel=1e-2)
