"""`data.sampling: rare_classes` (seg/data/sampling.py) and weighted draws in EpochSampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_helpers import seg_inprocess, train_args

from seg.data.samplers import EpochSampler
from seg.data.sampling import rare_class_weights, window_class_counts


def counts_table() -> np.ndarray:
    """20 windows of 100 px: class 0 everywhere, class 1 on 15, class 2 on 2, 3 null windows."""
    c = np.zeros((20, 3), np.int64)
    c[:, 0] = 60
    c[:15, 1] = 40
    c[:2, 2] = 20
    c[15:, 0] = 100  # windows 15-19: no class 1; 17-19 have nothing but class 0
    c[15:17, 2] = 30
    c[17:, 0] = 100
    return c


def test_rare_windows_are_drawn_more_and_null_windows_get_their_share() -> None:
    counts = counts_table()
    w = rare_class_weights(counts, temperature=0.1, null_share=0.2)
    assert w.shape == (20,) and np.isclose(w.sum(), 1.0) and (w > 0).all()
    rare = [0, 1, 15, 16]  # the windows with class 2
    common = [i for i in range(15) if i not in rare]
    assert w[rare].min() > 3 * w[common].max()  # class 2 is 4 % of the pixels
    assert w[17:].sum() >= 0.2  # the null share, plus what class 0 gives them
    # Without null windows the share is not lost: still a distribution, class 2 still first.
    w0 = rare_class_weights(counts[:17], temperature=0.1, null_share=0.2)
    assert np.isclose(w0.sum(), 1.0) and w0[[0, 1, 15, 16]].min() > w0[2:15].max()
    # A very high temperature draws every class alike; no null share then: windows of two
    # classes are drawn more than windows of one.
    flat = rare_class_weights(counts, temperature=1e6, null_share=0.0)
    assert np.isclose(flat.sum(), 1.0) and flat[0] > flat[17]


def test_a_class_in_no_window_and_an_unlabelled_store_stay_finite() -> None:
    counts = np.zeros((4, 3), np.int64)
    counts[:, 0] = 10
    w = rare_class_weights(counts, temperature=0.1, null_share=0.5)
    assert np.allclose(w, 0.25)  # every window alike: nothing to favour
    assert np.allclose(rare_class_weights(np.zeros((3, 2)), temperature=0.1, null_share=0.1), 1 / 3)


def test_window_class_counts_skip_ignored_pixels() -> None:
    masks = [np.array([[0, 1], [255, 1]], np.uint8), np.array([[2, 2], [2, 255]], np.uint8)]

    class Source:
        def __len__(self) -> int:
            return len(masks)

        def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return np.zeros((1, 2, 2)), masks[i]

    assert window_class_counts(Source(), 3).tolist() == [[1, 2, 0], [0, 0, 3]]


def test_weighted_draws_follow_the_weights_and_resume_exactly() -> None:
    weights = np.array([0.7, 0.1, 0.1, 0.05, 0.05])
    full = list(EpochSampler(5, 4, 2500, seed=3, epoch=1, weights=weights))
    drawn = np.bincount([i for i, _ in full], minlength=5) / len(full)
    assert np.abs(drawn - weights).max() < 0.02
    # A resumed epoch yields exactly the rest; another epoch draws differently.
    assert (
        list(EpochSampler(5, 4, 2500, seed=3, epoch=1, weights=weights, start_batch=7))
        == (full[28:])
    )
    assert full != list(EpochSampler(5, 4, 2500, seed=3, epoch=2, weights=weights))
    ranks = [
        list(EpochSampler(5, 2, 3, seed=1, epoch=0, rank=r, world=2, weights=weights))
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 6
    with pytest.raises(ValueError, match="3 sampling weights for 5 windows"):
        EpochSampler(5, 2, 3, seed=1, epoch=0, weights=np.ones(3) / 3)


def test_seg_train_with_rare_class_sampling(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=4)
    sets = ["train.epochs=1", "train.steps_per_epoch=2", "data.sampling=rare_classes"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, tmp_path / "run", *sets))
    assert code == 0, err
    assert "rare-class sampling over 4 windows" in err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "sampling: rare_classes" in saved
