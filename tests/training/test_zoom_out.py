"""Zoom-out batches: a whole batch shrunk (area means, nearest labels) to a multiple of 32."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from conftest import train_one_step
from train_helpers import weights

from seg.training.zoom_out import side_multiple, zoom_out


def halves(b: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Left half 0 and labelled 0, right half 10 and labelled 1; row 0 is ignore (255)."""
    image = torch.zeros(b, 3, size, size)
    image[..., size // 2 :] = 10.0
    mask = torch.zeros(b, size, size, dtype=torch.int64)
    mask[..., size // 2 :] = 1
    mask[:, 0] = 255
    return image, mask


def test_a_shrunk_batch_keeps_its_picture_its_labels_and_a_multiple_of_32() -> None:
    image, mask = halves(size=128)
    shrunk = [zoom_out(image, mask, share=1.0, smallest=0.25, seed=s) for s in range(12)]
    sides = {m.shape[-1] for _, m in shrunk}
    assert sides <= {32, 64, 96} and len(sides) > 1  # 0.25-1 of 128, never the full 128
    for small, labels in shrunk:
        side = labels.shape[-1]
        assert small.shape == (2, 3, side, side) and labels.shape == (2, side, side)
        assert labels.dtype == torch.int64
        assert set(labels.unique().tolist()) <= {0, 1, 255}  # class ids whole, never blended
        half = side // 2
        assert (small[..., : half - 1] == 0).all() and (small[..., half + 1 :] == 10).all()
        assert (labels[:, 1:, : half - 1] == 0).all() and (labels[:, 1:, half + 1 :] == 1).all()
    assert torch.equal(mask, halves(size=128)[1])  # the inputs are not written to


def test_a_shrunk_side_stays_a_multiple_the_scaled_network_can_take() -> None:
    assert [side_multiple(s) for s in (1.0, 0.5, 0.75, 0.25)] == [32, 64, 128, 128]
    image, mask = halves(b=1, size=512)
    sides = {
        zoom_out(image, mask, share=1.0, smallest=0.5, seed=s, multiple=64)[1].shape[-1]
        for s in range(40)
    }
    assert sides == {256, 320, 384, 448}  # at model.scale 0.5 the network sees 128-224 px


def test_the_draw_depends_on_the_seed_and_share_sets_how_often() -> None:
    image, mask = halves()
    a = zoom_out(image, mask, share=0.5, smallest=0.5, seed=7)
    b = zoom_out(image, mask, share=0.5, smallest=0.5, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    shrunk = [
        zoom_out(image, mask, share=0.3, smallest=0.5, seed=s)[1].shape[-1] < 64 for s in range(200)
    ]
    assert 0.2 < sum(shrunk) / 200 < 0.4
    assert zoom_out(image, mask, share=0.0, smallest=0.5, seed=7)[1] is mask  # off: untouched


def test_seg_train_shrinks_its_batches_as_configured(
    seg_run: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    """One deterministic step: the run with every batch shrunk trains other weights than the
    run without (the loop hands the shrunk batch to the step, and the step takes its size)."""
    runs = {}
    for name, share in (("off", 0.0), ("all", 1.0)):
        (tmp_path / name).mkdir()
        sets = (
            "train.deterministic=true",
            "augment.cut_mix=0",
            "model.scale=1.0",  # 64 px windows: at 0.5 the side cannot shrink below one 64
            f"augment.zoom_out={share}",
        )
        runs[name] = weights(train_one_step(seg_run, tmp_path / name, sets=sets) / "last.pt")
    assert any(not torch.equal(runs["off"][k], runs["all"][k]) for k in runs["off"])
