"""`train.ema_decay`: validation and checkpoints use an average of the weights; resume keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from train_helpers import seg_inprocess, train_args, weights

from seg.checkpoint import load_checkpoint
from seg.training.ema import WeightAverage


def test_the_first_update_copies_then_the_average_follows_the_ramped_decay() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.99)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg.update(net)  # the first update copies (the net may have been warm-started)
    assert torch.equal(avg.net[0].weight, net[0].weight)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    net[1].num_batches_tracked += 5
    avg.update(net)
    d = 2 / 11  # min(0.99, (1 + 1) / (10 + 1)): the ramp, not 0.99, after one update
    assert avg.current_decay() == pytest.approx(3 / 12)
    assert torch.allclose(avg.net[0].weight, torch.full((2, 3), d * 1.0 + (1 - d) * 3.0))
    assert int(avg.net[1].num_batches_tracked) == 5  # integer buffers are copied
    assert not any(p.requires_grad for p in avg.net.parameters())
    assert avg.evaluated(net) is avg.net
    assert WeightAverage(net, 0.9).evaluated(net) is net  # nothing averaged yet


def test_checkpoints_hold_the_average_and_resume_continues_it_exactly(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=4)
    sets = [
        "train.epochs=1",
        "train.steps_per_epoch=4",
        "checkpoint.every_steps=1",
        "checkpoint.keep=4",
        "train.ema_decay=0.9",
    ]
    straight = tmp_path / "straight"
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, straight, *sets))
    assert code == 0, err
    state = load_checkpoint(str(straight / "last.pt"))
    assert state["ema_updates"] == 4
    raw, averaged = state["raw_state_dict"], state["state_dict"]
    moved = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], averaged[k])]
    assert moved, "the saved weights are the trained ones, not their average"

    # Resumed from the step-2 snapshot into a new folder, it ends on the same average.
    resumed = tmp_path / "resumed"
    step2 = str(straight / "step_00000002.pt")
    code, err = seg_inprocess(
        monkeypatch, capsys, *train_args(store, resumed, *sets), "--resume", step2
    )
    assert code == 0, err
    a, b = weights(straight / "last.pt"), weights(resumed / "last.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key

    # Without the average the run ends on other weights (the test above can fail).
    plain = tmp_path / "plain"
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, plain, *sets[:-1]))
    assert code == 0, err
    c = weights(plain / "last.pt")
    assert all(torch.equal(c[k], raw[k]) for k in c)
    assert "raw_state_dict" not in load_checkpoint(str(plain / "last.pt"))
