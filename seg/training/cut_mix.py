"""CutMix for segmentation: a square from another window of the batch pasted, image and labels
together, into some of the windows. Every pixel keeps its own label; what changes is the context
around it, so a network trained on few scenes cannot lean on "what surrounds this" as much.

`augment.cut_mix: auto` (the shipped config) mixes half the windows on imagery of two or more
bands and none on a single band (`seg.training.band_count`, docs/recipe.md rows 95-99).
"""

from __future__ import annotations

import torch


def cut_mix(
    image: torch.Tensor, mask: torch.Tensor, share: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (B, C, H, W), mask (B, H, W) -> the same shapes, with a share of the windows given a
    square of side 30-70 % of the window (9-49 % of its area) from the next window of the batch.
    The draw depends only on `seed` (the run's seed and step), so a resumed run mixes the same."""
    b, h, w = mask.shape
    if b < 2 or share <= 0:
        return image, mask
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(b, generator=g) < share).nonzero().flatten().tolist()
    if not chosen:
        return image, mask
    # one copy to write into; the squares are read from the untouched inputs
    mixed_image, mixed_mask = image.clone(), mask.clone()
    for i in chosen:
        side = float(torch.empty(1).uniform_(0.3, 0.7, generator=g))
        bh, bw = max(1, round(h * side)), max(1, round(w * side))
        r = int(torch.randint(0, h - bh + 1, (1,), generator=g))
        c = int(torch.randint(0, w - bw + 1, (1,), generator=g))
        rows, cols, j = slice(r, r + bh), slice(c, c + bw), i - 1  # window 0 takes window B-1's
        mixed_image[i, :, rows, cols] = image[j, :, rows, cols]
        mixed_mask[i, rows, cols] = mask[j, rows, cols]
    return mixed_image, mixed_mask
