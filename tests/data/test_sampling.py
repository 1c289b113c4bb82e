"""`data.sampling` (seg/data/sampling.py, seg/training/window_draws.py): rare-class and
hard-window weights, weighted draws in EpochSampler, and real runs that draw by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_helpers import seg_inprocess, train_args

from seg.data.samplers import EpochSampler
from seg.data.sampling import hard_window_weights, mask_class_counts, rare_class_weights


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


def test_mask_class_counts_skip_ignored_pixels() -> None:
    masks = [np.array([[0, 1], [255, 1]], np.uint8), np.array([[2, 2], [2, 255]], np.uint8)]

    class Source:
        def __len__(self) -> int:
            return len(masks)

        def read_mask(self, i: int) -> np.ndarray:
            return masks[i]

    assert mask_class_counts(Source(), 3).tolist() == [[1, 2, 0], [0, 0, 3]]
    assert mask_class_counts(Source(), 3, [1]).tolist() == [[0, 0, 3]]


def test_hard_windows_get_the_hard_share_by_loss_and_unseen_ones_count_as_hardest() -> None:
    loss = np.array([0.1, 0.1, 0.8, np.nan])
    w = hard_window_weights(loss, share=0.5)
    assert np.isclose(w.sum(), 1.0)
    # half uniform (0.125 each), half by loss: the unseen window weighs as the hardest seen
    np.testing.assert_allclose(w, 0.125 + 0.5 * np.array([0.1, 0.1, 0.8, 0.8]) / 1.8)
    assert np.allclose(hard_window_weights(np.full(3, np.nan), 0.5), 1 / 3)  # nothing seen
    assert np.allclose(hard_window_weights(np.zeros(3), 1.0), 1 / 3)  # nothing hard
    np.testing.assert_allclose(hard_window_weights(np.array([1.0, 3.0]), 1.0), [0.25, 0.75])


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


def checkpoint_draws(run: Path) -> dict:  # type: ignore[type-arg]
    from seg.checkpoint import load_checkpoint

    return load_checkpoint(str(run / "last.pt"))["draws"]  # type: ignore[no-any-return]


def test_seg_train_draws_the_one_window_of_a_rare_class_most(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A real run: class 1 only in window 0 of 8 (the others all background). Rare-class sampling
    draws window 0 most of the time; the checkpoint records what was drawn."""

    def only_window_0(scene: str, w: int, mask: np.ndarray) -> np.ndarray:
        return mask if scene == "b" or w == 0 else np.zeros_like(mask)

    store = make_store({"a": "train", "b": "val"}, windows=8, edit_mask=only_window_0)
    sets = ["train.epochs=1", "train.steps_per_epoch=10", "data.sampling=rare_classes"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, tmp_path / "run", *sets))
    assert code == 0, err
    assert "rare-class sampling over 8 windows" in err
    assert "sampling: rare_classes" in (tmp_path / "run" / "config.yaml").read_text()
    drawn = np.array(checkpoint_draws(tmp_path / "run")["drawn"])
    assert drawn.sum() == 20  # 10 steps of 2
    assert drawn[0] >= 12, drawn  # uniform would draw it 2 or 3 times in 20
    # Uniform sampling, same store: each window once or twice an epoch of permutations.
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, tmp_path / "flat", *sets[:2]))
    assert code == 0, err
    flat = np.array(checkpoint_draws(tmp_path / "flat")["drawn"])
    assert flat.sum() == 20 and flat.max() - flat.min() <= 1, flat


@pytest.mark.parametrize("model", ["unet_mobilenetv2", "pix2pix"])
def test_seg_train_with_hard_windows_measures_every_window_it_draws(
    model: str, make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=6)
    sets = [f"model.name={model}", "train.epochs=3", "train.steps_per_epoch=3"]
    sets.append("data.sampling=hard_windows")
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, tmp_path / "run", *sets))
    assert code == 0, err
    draws = checkpoint_draws(tmp_path / "run")
    drawn, loss = np.array(draws["drawn"]), draws["loss"]
    assert drawn.sum() == 18
    assert [x is not None and x > 0 for x in loss] == (drawn > 0).tolist()
    # The last epoch drew by the losses measured before it: not uniform any more.
    w = np.array(draws["weights"])
    assert draws["epoch"] == 2 and np.isclose(w.sum(), 1.0) and np.ptp(w) > 1e-3


def test_hard_windows_are_refused_for_a_step_that_cannot_measure_them() -> None:
    from seg.config import DataSection
    from seg.errors import ConfigError
    from seg.training.steps import Step
    from seg.training.window_draws import WindowDraws

    class Blind(Step):  # a model whose train_step reports no per-window loss
        def __init__(self) -> None:
            self.keep_window_losses = False

    draws = WindowDraws(2, DataSection(sampling="hard_windows"))
    with pytest.raises(ConfigError, match=r"blind does not: use data\.sampling=uniform"):
        draws.attach(Blind(), "blind")
    step = Blind()
    step.measures_windows = True
    draws.attach(step, "seeing")
    assert step.keep_window_losses


def test_window_draws_follow_the_losses_they_observe_and_round_trip() -> None:
    from seg.config import DataSection
    from seg.training.runtime import Distributed
    from seg.training.window_draws import WindowDraws

    data = DataSection(sampling="hard_windows", hard_share=1.0)
    draws = WindowDraws(3, data)
    assert np.allclose(draws.weights(0), 1 / 3)  # nothing seen yet
    draws.observe(np.array([0, 1]), np.array([1.0, 3.0]), Distributed())
    draws.observe(np.array([1, 1]), np.array([1.0, 1.0]), Distributed())
    # window 1: 3, then the mean of two draws of 1 -> 0.5 * 3 + 0.5 * 1 = 2
    assert draws.loss[:2].tolist() == [1.0, 2.0] and np.isnan(draws.loss[2])
    assert draws.drawn.tolist() == [1, 3, 0]
    assert np.allclose(draws.weights(0), 1 / 3)  # fixed for the epoch it was asked for
    np.testing.assert_allclose(draws.weights(1), [1 / 5, 2 / 5, 2 / 5])  # unseen = hardest
    again = WindowDraws(3, data)
    again.load_state_dict(draws.state_dict())
    np.testing.assert_array_equal(again.weights(1), draws.weights(1))
    assert again.drawn.tolist() == [1, 3, 0] and again.loss[1] == 2.0
    WindowDraws(4, data).load_state_dict(draws.state_dict())  # another store: starts afresh
