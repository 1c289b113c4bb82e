"""The Lovász-softmax loss is the IoU it stands for: on hard predictions it is exactly
mean(1 - IoU) over the classes present, and it falls as the prediction improves."""

from __future__ import annotations

import torch

from seg.config import LossSection
from seg.training.losses import build_loss, lovasz_softmax


def ious(pred: torch.Tensor, target: torch.Tensor, k: int) -> list[float]:
    valid = target != 255
    out = []
    for c in range(k):
        t, p = (target == c) & valid, (pred == c) & valid
        if t.any():
            out.append(float((t & p).sum() / (t | p).sum()))
    return out


def test_on_hard_predictions_it_is_one_minus_the_iou() -> None:
    torch.manual_seed(0)
    k = 3
    target = torch.randint(0, k, (2, 16, 16))
    target[0, :3] = 255
    noise = torch.randint(0, k, (2, 16, 16))
    pred = torch.where((torch.rand(2, 16, 16) < 0.3) | (target == 255), noise, target)
    logits = 50.0 * torch.nn.functional.one_hot(pred, k).permute(0, 3, 1, 2).float()
    expected = sum(1 - x for x in ious(pred, target, k)) / k
    assert torch.isclose(lovasz_softmax(logits, target), torch.tensor(expected), atol=1e-4)
    # a class absent from the target does not count
    two = torch.where(target == 2, 0, target)
    pred2 = torch.where(pred == 2, 0, pred)
    logits2 = 50.0 * torch.nn.functional.one_hot(pred2, k).permute(0, 3, 1, 2).float()
    expected2 = sum(1 - x for x in ious(pred2, two, k)) / 2
    assert torch.isclose(lovasz_softmax(logits2, two), torch.tensor(expected2), atol=1e-4)


def test_gradient_steps_raise_the_iou() -> None:
    torch.manual_seed(1)
    target = (torch.rand(1, 32, 32) < 0.1).long()  # a rare class
    logits = torch.zeros(1, 2, 32, 32, requires_grad=True)
    loss_fn = build_loss(LossSection(name="ce_lovasz"), 2, torch.device("cpu"))
    optimizer = torch.optim.Adam([logits], lr=0.1)
    first = float(loss_fn(logits, target))
    for _ in range(40):
        optimizer.zero_grad()
        loss_fn(logits, target).backward()
        optimizer.step()
    assert float(loss_fn(logits, target)) < 0.5 * first
    assert min(ious(logits.argmax(1), target, 2)) > 0.9
