"""An exponential moving average (EMA) of a network's weights, for `train.ema_decay`.

A short run on a small store ends on whichever weights its last few noisy steps left; the
average of the recent weights generalises better (Polyak averaging; timm's ModelEmaV2 and
YOLO's ModelEMA do the same). The average is what validation scores and what a checkpoint's
"state_dict" holds, so `seg predict`, `seg export` and `model.init_from` use it without
knowing; the weights being trained travel beside it ("raw_state_dict") for `--resume`.

The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so the average is not
dominated by the random initial weights in a run of a few hundred steps; the first update
copies the network (which may just have been warm-started). Batch-norm statistics are averaged
like the weights; integer buffers (num_batches_tracked) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        # A frozen copy: it never trains and never needs gradients.
        self.net = copy.deepcopy(net).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Fold `net`'s current weights into the average (after an optimizer step)."""
        d = 0.0 if self.updates == 0 else self.current_decay()
        live = net.state_dict()
        for name, avg in self.net.state_dict().items():
            now = live[name].detach()
            if avg.is_floating_point():
                avg.mul_(d).add_(now.to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(now)
        self.updates += 1

    def evaluated(self, net: nn.Module) -> nn.Module:
        """The network to score: the average once it holds at least one update."""
        return self.net if self.updates else net

    def state_dict(self) -> dict[str, Any]:
        return {"ema_updates": self.updates}

    def load(self, weights: dict[str, Any], updates: int) -> None:
        self.net.load_state_dict(weights)
        self.updates = updates
