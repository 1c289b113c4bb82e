"""Zoom-out batches: some batches shrunk as a whole (imagery by area means, labels by nearest
pixel) before the step, so the network also learns each scene at coarser pixels than it is
trained at, with more context around every pixel in its receptive field.

Why: `seg predict`'s coarse pass (`seg.inference.coarse_pass`) found that a network trained at one
scale scores higher on 17 of 18 checkpoints when its view at half the resolution is blended in
(docs/recipe.md row 103); training on such views is the other half of that. A shrunk batch is
also cheaper: at half the side it costs about a quarter of a step.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

from seg.config import AugmentSection
from seg.models.unet import STRIDE


def side_multiple(scale: float) -> int:
    """The multiple a shrunk side must keep so that the network at `model.scale` still sees a
    multiple of 32 pixels: 32 x the scale's denominator (64 at 1/2, 32 at 1, 128 at 3/4)."""
    return STRIDE * Fraction(scale).limit_denominator(1024).denominator


def zoom_out(
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    share: float,
    smallest: float,
    seed: int,
    multiple: int = STRIDE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (B, C, H, W), mask (B, H, W) -> (B, C, h, w), (B, h, w): with probability `share`
    the batch shrunk by one factor drawn from [smallest, 1), each side rounded down to a
    multiple of `multiple` (`side_multiple`; at least one multiple); otherwise unchanged. The
    draw depends only on `seed`, so a resumed run shrinks the same batches."""
    if share <= 0:
        return image, mask
    g = torch.Generator().manual_seed(seed)
    if float(torch.rand(1, generator=g)) >= share:
        return image, mask
    factor = float(torch.empty(1).uniform_(smallest, 1.0, generator=g))
    h, w = mask.shape[-2:]
    # rounded down, so a drawn batch always shrinks (512 px, 0.5, multiple 64: 256 to 448)
    size = (
        max(multiple, int(h * factor) // multiple * multiple),
        max(multiple, int(w * factor) // multiple * multiple),
    )
    if size == (h, w):  # a batch already at one multiple
        return image, mask
    # area = the mean of the input pixels each output pixel covers (seg's scale, the coarse pass)
    small = F.interpolate(image.float(), size=size, mode="area").to(image.dtype)
    # (B, H, W) -> (B, 1, H, W) for interpolate; nearest keeps 255 (ignore) and class ids whole
    labels = F.interpolate(mask[:, None].float(), size=size, mode="nearest-exact")
    return small, labels[:, 0].to(mask.dtype)


def zoom_batch(
    image: torch.Tensor, mask: torch.Tensor, aug: AugmentSection, *, scale: float | str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`zoom_out` as the config sets it, for a network at `model.scale` `scale` (resolved)."""
    multiple = side_multiple(float(scale))
    return zoom_out(
        image, mask, share=aug.zoom_out, smallest=aug.zoom_out_min, seed=seed, multiple=multiple
    )
