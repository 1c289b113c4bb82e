"""What the pix2pix discriminator is shown besides the plain pairs: instance noise, soft and
flipped targets, and mismatched pairs ("null pictures"). Pure functions of the `pix2pix`
section and torch's global RNG (which checkpoints carry, so a resumed run draws the same)."""

from __future__ import annotations

import torch

from seg.gan_config import Pix2PixSection


def noisy(x: torch.Tensor, valid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Instance noise (Sønderby et al. 2016): blurs the one-hot vs softmax giveaway early on."""
    if sigma <= 0:
        return x
    return (x + sigma * torch.randn_like(x)) * valid


def soft_targets(
    p: Pix2PixSection, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample D targets (B, 1, 1, 1) for the real and fake pairs: real in
    [real_label - w, real_label], fake in [0, w], then swapped with probability flip_prob."""
    real = torch.full((batch, 1, 1, 1), p.real_label, device=device)
    fake = torch.zeros((batch, 1, 1, 1), device=device)
    w = p.soft_label_width
    if w > 0:
        if p.soft_label_dist == "normal":  # N(w/2, w/4) clipped to [0, w]: mostly mid-way
            draw = (0.5 + 0.25 * torch.randn(2, batch, 1, 1, 1, device=device)).clamp(0, 1)
        else:
            draw = torch.rand(2, batch, 1, 1, 1, device=device)
        real, fake = real - w * draw[0], fake + w * draw[1]
    if p.flip_prob > 0:
        flip = torch.rand_like(real) < p.flip_prob
        real, fake = torch.where(flip, fake, real), torch.where(flip, real, fake)
    return real, fake


def mismatched(
    p: Pix2PixSection, real: torch.Tensor, fake: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """The fake masks (B, K, H, W) with a share `mismatch_prob` replaced by true masks that
    belong to another image: the next window's in the batch, or (a batch of one) its own
    rolled by half a window. Ignore pixels of this image stay zero."""
    chosen = torch.rand(real.shape[0], 1, 1, 1, device=real.device) < p.mismatch_prob
    if real.shape[0] > 1:
        wrong = real.roll(1, dims=0)
    else:
        wrong = real.roll((real.shape[-2] // 2, real.shape[-1] // 2), dims=(-2, -1))
    return torch.where(chosen, wrong * valid, fake)
