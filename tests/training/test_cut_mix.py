"""Cut-mix: a square of the next window of the batch, image and labels together, seeded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from conftest import train_one_step
from train_helpers import weights

from seg.config import TrainConfig, load_config
from seg.training.band_count import resolve_augment
from seg.training.cut_mix import cut_mix


def batch(b: int = 4, c: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Window i is all i (image) and labelled i, so every pixel says where it came from."""
    image = torch.arange(b, dtype=torch.float32)[:, None, None, None].expand(b, c, size, size)
    mask = torch.arange(b, dtype=torch.int64)[:, None, None].expand(b, size, size)
    return image.clone(), mask.clone()


def test_pasted_pixels_come_from_the_next_window_with_their_labels() -> None:
    image, mask = batch()
    out_image, out_mask = cut_mix(image, mask, share=1.0, seed=3)
    for i in range(4):
        pasted = out_mask[i] != i
        # the square of side 30-70 %: 9-49 % of the window
        assert 0.09 * 32 * 32 * 0.8 <= int(pasted.sum()) <= 0.49 * 32 * 32 * 1.2
        assert (out_mask[i][pasted] == (i - 1) % 4).all()  # from the window before (roll by 1)
        rows, cols = pasted.nonzero().unbind(1)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(box) == int(pasted.sum())  # one solid rectangle
        # the image moved with the labels, in every band
        assert torch.equal(out_image[i], out_mask[i].float().expand(3, 32, 32))
    assert torch.equal(mask, batch()[1])  # the inputs are not written to


def test_the_draw_depends_on_the_seed_only_and_share_zero_is_identity() -> None:
    image, mask = batch()
    a = cut_mix(image, mask, share=0.5, seed=11)
    b = cut_mix(image, mask, share=0.5, seed=11)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    draws = {tuple(cut_mix(image, mask, 1.0, seed=s)[1][:, 0, :].sum(1).tolist()) for s in range(8)}
    assert len(draws) > 1  # other seeds, other squares
    same = cut_mix(image, mask, share=0.0, seed=11)
    assert torch.equal(same[1], mask)
    one = cut_mix(image[:1], mask[:1], share=1.0, seed=11)  # nothing to mix with
    assert torch.equal(one[1], mask[:1])


def test_share_sets_how_many_windows_are_mixed() -> None:
    image, mask = batch(b=64, size=16)
    mixed = [
        int((cut_mix(image, mask, 0.3, s)[1] != mask).flatten(1).any(1).sum()) for s in range(20)
    ]
    assert 0.2 < sum(mixed) / (20 * 64) < 0.4


def test_auto_mixes_imagery_of_several_bands_and_keeps_a_given_share() -> None:
    cfg = load_config(TrainConfig, "configs/unet_mobilenetv2.yaml")
    assert cfg.augment.cut_mix == "auto"  # the shipped config (docs/recipe.md rows 95-98)
    assert [resolve_augment(cfg, b).augment.cut_mix for b in (1, 2, 3, 4)] == [
        0.0,
        *[0.5] * 3,
    ]
    given = load_config(TrainConfig, "configs/unet_mobilenetv2.yaml", ["augment.cut_mix=0.2"])
    assert resolve_augment(given, 1).augment.cut_mix == 0.2


def test_seg_train_mixes_its_batches_as_configured(
    seg_run: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    """One deterministic step of the shipped config: two runs without cut-mix agree, and the one
    with every window mixed trains other weights (the loop hands the mixed batch to the step)."""
    runs = {}
    for name, share in (("off", 0.0), ("off_again", 0.0), ("all", 1.0)):
        (tmp_path / name).mkdir()
        run = train_one_step(
            seg_run, tmp_path / name, sets=("train.deterministic=true", f"augment.cut_mix={share}")
        )
        runs[name] = weights(run / "last.pt")
    same = [torch.equal(runs["off"][k], runs["off_again"][k]) for k in runs["off"]]
    assert all(same)
    moved = [not torch.equal(runs["off"][k], runs["all"][k]) for k in runs["off"]]
    assert any(moved)
