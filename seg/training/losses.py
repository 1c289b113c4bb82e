"""Segmentation losses chosen by `loss.name`: cross-entropy, Dice, CE+Dice, focal, focal+Dice,
Lovász-softmax and CE+Lovász.

All take logits (B, K, H, W) and integer targets (B, H, W); pixels labelled 255 never count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from seg.classes import IGNORE
from seg.config import LossSection
from seg.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice over valid pixels, averaged over classes."""
    k = logits.shape[1]
    valid = (target != IGNORE).unsqueeze(1)  # (B, 1, H, W)
    prob = logits.float().softmax(dim=1) * valid
    # 255 -> class 0 for one_hot, then masked out by `valid`.
    onehot = F.one_hot(torch.where(target == IGNORE, 0, target).long(), k)  # (B, H, W, K)
    onehot = onehot.permute(0, 3, 1, 2).float() * valid  # (B, K, H, W)
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)  # (K,)
    return 1.0 - dice.mean()


@torch.no_grad()
def window_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits, (B, H, W) targets -> (B,) cross-entropy of each window over its
    labelled pixels (0 for a window with none): how hard each window still is."""
    ce = F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE, reduction="none")
    valid = (target != IGNORE).flatten(1).sum(1)  # (B,)
    return ce.flatten(1).sum(1) / valid.clamp(min=1)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None
) -> torch.Tensor:
    """Focal loss (Lin et al.): CE scaled by (1 - p_t)^gamma, mean over valid pixels."""
    ce = F.cross_entropy(
        logits.float(), target.long(), weight=weight, ignore_index=IGNORE, reduction="none"
    )
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    pt = torch.exp(
        -F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE, reduction="none")
    )
    return ((1 - pt) ** gamma * ce)[valid].mean()


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss for foreground indicators sorted by
    falling error (Berman et al. 2018, alg. 1)."""
    total = fg_sorted.sum()
    inter = total - fg_sorted.cumsum(0)
    union = total + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - inter / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax over the valid pixels of the batch, averaged over the classes present: a
    convex surrogate of 1 - IoU, optimised directly."""
    k = logits.shape[1]
    prob = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, k)  # (B*H*W, K)
    labels = target.reshape(-1)
    valid = labels != IGNORE
    prob, labels = prob[valid], labels[valid]
    losses = []
    for c in range(k):
        fg = (labels == c).float()
        if fg.sum() == 0:
            continue  # a class absent from the batch says nothing about its IoU
        errors = (fg - prob[:, c]).abs()
        order = torch.argsort(errors, descending=True)
        losses.append(torch.dot(errors[order], _lovasz_grad(fg[order])))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()


def build_loss(section: LossSection, num_classes: int, device: torch.device) -> LossFn:
    """A loss function (logits, target) -> scalar for the configured name."""
    weight: torch.Tensor | None = None
    if section.class_weights == "auto":
        raise ConfigError("loss.class_weights auto is resolved by the training session")
    if section.class_weights is not None:
        if len(section.class_weights) != num_classes:
            raise ConfigError(
                f"loss.class_weights has {len(section.class_weights)} values but the store has"
                f" {num_classes} classes; give one weight per class"
            )
        weight = torch.tensor(section.class_weights, dtype=torch.float32, device=device)

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != IGNORE).any():
            # An all-ignore batch: a zero that still keeps the graph (no NaN from an empty mean).
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target.long(), weight=weight, ignore_index=IGNORE)

    if section.name == "ce":
        return ce
    if section.name == "dice":
        return dice_loss
    gamma, dice_weight = section.focal_gamma, section.dice_weight
    if section.name == "focal":
        return lambda logits, target: focal_loss(logits, target, gamma, weight)
    if section.name == "focal_dice":
        return lambda logits, target: (
            focal_loss(logits, target, gamma, weight) + dice_weight * dice_loss(logits, target)
        )
    if section.name == "lovasz":
        return lovasz_softmax
    if section.name == "ce_lovasz":
        return lambda logits, target: ce(logits, target) + lovasz_softmax(logits, target)
    return lambda logits, target: ce(logits, target) + dice_weight * dice_loss(logits, target)
