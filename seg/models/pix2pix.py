"""The pix2pix discriminator: a PatchGAN that judges (image, mask) pairs, patch by patch.

The pix2pix generator is the UNet-MobileNetV2 from `seg.models.build_model` (so a pix2pix
checkpoint predicts like any other); this module only adds what training needs on top of it.

The discriminator sees the image bands concatenated with K class channels: the one-hot truth for
real pairs, the generator's softmax for fake ones. Each output logit judges one ~70x70 patch
(Isola et al. 2017, `layers=3`). Pixels labelled 255 (ignore) are zeroed in both inputs, and each
patch's loss is weighted by its share of valid pixels (`patch_weights`), so no-data never
teaches the discriminator anything.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seg.classes import IGNORE

Norm = Literal["none", "instance", "batch"]


def _conv(in_ch: int, out_ch: int, stride: int, spectral: bool) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=stride, padding=1)
    return nn.utils.spectral_norm(conv) if spectral else conv


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # affine=True: a plain InstanceNorm would erase per-patch contrast that D needs.
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    """(B, C + K, H, W) -> patch logits (B, 1, h, w), one per receptive field.

    `layers` stride-2 convolutions (the first without normalisation) then two stride-1 ones,
    all 4x4: layers=3 gives the 70x70 PatchGAN of pix2pix, layers=2 34x34, layers=4 142x142.
    Spectral normalisation bounds each layer's Lipschitz constant, the main reason D does not
    overpower G here; it is on by default.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 64,
        layers: int = 3,
        norm: Norm = "none",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or layers < 1 or base_channels < 1:
            raise ValueError("in_channels, layers and base_channels must be positive")
        self.in_channels = in_channels
        self.layers = layers
        blocks: list[nn.Module] = [
            _conv(in_channels, base_channels, 2, spectral_norm),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = base_channels
        for i in range(1, layers + 1):
            # Widths 64, 128, 256, 512 (capped at 8x base); the last of these convs has stride 1.
            out = base_channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [_conv(ch, out, stride, spectral_norm), _norm(norm, out)]
            blocks.append(nn.LeakyReLU(0.2, inplace=True))
            ch = out
        blocks.append(_conv(ch, 1, 1, spectral_norm))
        self.net = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (B, C, H, W) normalised bands, mask (B, K, H, W) class probabilities."""
        return self.net(torch.cat([image, mask], dim=1))

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Each block's activations (after its LeakyReLU), then the patch logits of forward."""
        x, out = torch.cat([image, mask], dim=1), []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return [*out, x]


def receptive_field(layers: int) -> int:
    """Side in pixels of the input patch behind one output logit of `PatchDiscriminator`.

    Walk back from one output pixel: each 4x4 conv adds (4 - 1) * (product of earlier strides).
    """
    strides = [2] * layers + [1, 1]  # `layers` stride-2 convs, then two stride-1 ones
    field, jump = 1, 1
    for s in strides:
        field += 3 * jump
        jump *= s
    return field


def one_hot(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer mask (B, H, W), 255 = ignore -> float one-hot (B, K, H, W), zeros at ignore."""
    valid = mask != IGNORE
    hot = F.one_hot(torch.where(valid, mask, 0).long(), num_classes)  # (B, H, W, K)
    return hot.permute(0, 3, 1, 2).float() * valid.unsqueeze(1)


def patch_weights(valid: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Valid-pixel mask (B, 1, H, W) -> (B, 1, h, w): each patch's share of valid pixels.

    Area pooling to the discriminator's output grid approximates each patch's footprint; a patch
    over no-data only gets weight 0 and drops out of the loss.
    """
    return F.adaptive_avg_pool2d(valid.float(), (int(size[-2]), int(size[-1])))


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD's discriminator (Wang et al. 2018): one PatchGAN per scale, scale i judging the
    pair average-pooled by 2^i, so the coarser ones see larger structures for the same depth.
    (B, C + K, H, W) -> a list of patch logits, finest first."""

    def __init__(self, in_channels: int, scales: int, **patch: Any) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, **patch) for _ in range(scales))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, disc in enumerate(self.scales):
            if i:  # (B, C, H, W) -> (B, C, H / 2^i, W / 2^i)
                image, mask = F.avg_pool2d(image, 2), F.avg_pool2d(mask, 2)
            outs.append(disc(image, mask))
        return outs


def scale_features(
    d: nn.Module, image: torch.Tensor, mask: torch.Tensor
) -> list[list[torch.Tensor]]:
    """PatchDiscriminator.features per scale (one list for a single PatchGAN), finest first."""
    if isinstance(d, MultiScaleDiscriminator):
        out = []
        for i, disc in enumerate(d.scales):
            if i:  # the same pooling as MultiScaleDiscriminator.forward
                image, mask = F.avg_pool2d(image, 2), F.avg_pool2d(mask, 2)
            assert isinstance(disc, PatchDiscriminator)
            out.append(disc.features(image, mask))
        return out
    assert isinstance(d, PatchDiscriminator)
    return [d.features(image, mask)]


def feature_distance(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: the mean L1 over every block of every scale (the
    logits excluded), real features taken as constants."""
    terms = [
        F.l1_loss(f.float(), r.detach().float())
        for rs, fs in zip(real, fake, strict=True)
        for r, f in zip(rs[:-1], fs[:-1], strict=True)
    ]
    return torch.stack(terms).mean()


def judgements(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """A discriminator's patch logits as a list, one per scale (one for a PatchDiscriminator)."""
    return out if isinstance(out, list) else [out]


def build_discriminator(
    in_channels: int,
    num_classes: int,
    *,
    base_channels: int = 64,
    layers: int = 3,
    norm: Norm = "none",
    spectral_norm: bool = True,
    scales: int = 1,
) -> nn.Module:
    """The discriminator for `in_channels` image bands and `num_classes` mask channels: one
    PatchGAN (its checkpoints unchanged), or one per scale when `scales` > 1."""
    patch: dict[str, Any] = {
        "base_channels": base_channels,
        "layers": layers,
        "norm": norm,
        "spectral_norm": spectral_norm,
    }
    if scales > 1:
        return MultiScaleDiscriminator(in_channels + num_classes, scales, **patch)
    return PatchDiscriminator(in_channels + num_classes, **patch)


# --- adversarial losses ------------------------------------------------------------------------
# Each D input carries a per-sample target y in [0, 1] (1 = "real"; soft, smoothed or flipped by
# the step) and, for the margin losses, the sign r = +1 (real) / -1 (fake) of its hard role.
# Every loss is a mean over patches weighted by `patch_weights`, so no-data patches drop out.

GanLoss = Literal["vanilla", "lsgan", "hinge", "wgan-gp"]


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of per-patch `values` (B, 1, h, w) under `weights` of the same shape."""
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def discriminator_term(
    kind: GanLoss, out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """D's loss on one set of pairs: `out` patch logits (B, 1, h, w), `target` (B, 1, 1, 1)."""
    out = out.float()
    if kind == "vanilla":
        values = F.binary_cross_entropy_with_logits(out, target.expand_as(out), reduction="none")
    elif kind == "lsgan":
        values = (out - target).square()
    else:
        sign = target.round() * 2 - 1  # soft targets collapse to their hard role: +1 / -1
        values = F.relu(1 - sign * out) if kind == "hinge" else -sign * out
    return weighted_mean(values, weights)


def generator_term(kind: GanLoss, out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss on fake pairs: the non-saturating form of each loss."""
    out = out.float()
    if kind == "vanilla":
        values = F.binary_cross_entropy_with_logits(out, torch.ones_like(out), reduction="none")
    elif kind == "lsgan":
        values = (out - 1).square()
    else:
        values = -out  # hinge and WGAN: G raises D's score on its pairs
    return weighted_mean(values, weights)


def loss_floor(kind: GanLoss, target: torch.Tensor, weights: torch.Tensor) -> float:
    """The lowest `discriminator_term` its targets allow: the targets' entropy for BCE (soft or
    smoothed labels never reach 0), 0 for lsgan and hinge, NaN for WGAN (unbounded below)."""
    if kind == "wgan-gp":
        return math.nan
    if kind != "vanilla":
        return 0.0
    t = target.float().clamp(1e-6, 1 - 1e-6).expand_as(weights)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log())
    return float(weighted_mean(entropy, weights))


def discriminator_accuracy(
    kind: GanLoss, out_real: torch.Tensor, out_fake: torch.Tensor, weights: torch.Tensor
) -> float:
    """Share of patches D judges right (true roles, before any label flip)."""
    out_real, out_fake = out_real.detach().float(), out_fake.detach().float()
    if kind == "wgan-gp":
        hits = (out_real > out_fake).float()  # a critic has no threshold: compare the pairs
        return float(weighted_mean(hits, weights))
    thr = 0.5 if kind == "lsgan" else 0.0
    hits = ((out_real > thr).float() + (out_fake <= thr).float()) / 2
    return float(weighted_mean(hits, weights))


def gradient_penalty(
    disc: nn.Module, image: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 at random interpolates of the
    real and fake masks (the image, shared by both pairs, stays as it is)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)  # (B, K, H, W)
    total = torch.stack([out.float().sum() for out in judgements(disc(image, mixed))]).sum()
    (grad,) = torch.autograd.grad(total, mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()
