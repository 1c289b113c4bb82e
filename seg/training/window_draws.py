"""`WindowDraws`: the probabilities the training loop draws windows with, per epoch, and the
record of what was drawn (`data.sampling`; the weights themselves: seg.data.sampling).

- `uniform`: no weights; each epoch is a seeded permutation (EpochSampler).
- `rare_classes`: fixed weights from every window's class counts.
- `hard_windows`: weights fixed for an epoch at its start, from each window's recent training
  loss (an exponential average over the times it was drawn, updated after every step).

The record (the loss table, the current epoch's weights, how often each window was drawn) goes
into every checkpoint, so a resumed run draws exactly what the straight run draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg.config import DataSection
from seg.data.sampling import MaskSource, hard_window_weights, mask_class_counts, rare_class_weights
from seg.errors import ConfigError
from seg.training.class_balance import class_frequencies
from seg.training.runtime import Distributed
from seg.training.steps import Step

# Weight of the newest loss in a window's running average: the network changes fast in a short
# run, so the last few visits say more than the first.
LOSS_MEMORY = 0.5


class WindowDraws:
    def __init__(self, n: int, data: DataSection, fixed: np.ndarray | None = None) -> None:
        self.n, self.data, self.fixed = n, data, fixed
        self.hard = data.sampling == "hard_windows"
        self.loss = np.full(n, np.nan)  # (N,) running loss per window (NaN: not drawn yet)
        self.drawn = np.zeros(n, np.int64)  # (N,) times each window was drawn
        self.epoch, self.current = -1, fixed  # the epoch `current` was fixed for

    @classmethod
    def build(
        cls, dataset: MaskSource, data: DataSection, num_classes: int
    ) -> tuple[WindowDraws, np.ndarray]:
        """The draws of `data.sampling`, and the (K,) class shares of the training labels (from
        every mask when rare-class sampling reads them all anyway, else from a subsample)."""
        counts, fixed = None, None
        if data.sampling == "rare_classes":
            counts = mask_class_counts(dataset, num_classes)
            fixed = rare_class_weights(
                counts, temperature=data.sampling_temperature, null_share=data.null_share
            )
        return cls(len(dataset), data, fixed), class_frequencies(dataset, num_classes, counts)

    def attach(self, step: Step, model: str) -> None:
        """Ask the step for each window's loss when the draws need it (refused when it cannot)."""
        if not self.hard:
            return
        if not step.measures_windows:
            raise ConfigError(
                f"data.sampling=hard_windows needs a model that reports each window's loss;"
                f" {model} does not: use data.sampling=uniform or rare_classes"
            )
        step.keep_window_losses = True

    def weights(self, epoch: int) -> np.ndarray | None:
        """(N,) probabilities for `epoch`'s draws (None: uniform permutations); a hard-window
        epoch's weights are fixed when first asked for and kept until the epoch changes."""
        if self.hard and epoch != self.epoch:
            self.current = hard_window_weights(self.loss, self.data.hard_share)
            self.epoch = epoch
        return self.current

    def observe(self, indices: np.ndarray, losses: np.ndarray | None, ddp: Distributed) -> None:
        """One step's windows (this rank's `indices`) and, for hard-window sampling, their (B,)
        losses; every rank ends with the same record (one sum over ranks per step)."""
        seen = np.zeros((2, self.n))  # (2, N): loss sums, draws
        np.add.at(seen[1], indices, 1.0)
        if self.hard and losses is not None:
            np.add.at(seen[0], indices, losses)
        seen = ddp.total(seen)
        hit = seen[1] > 0
        self.drawn += seen[1].astype(np.int64)
        if self.hard and losses is not None:
            mean = seen[0][hit] / seen[1][hit]
            old = self.loss[hit]
            self.loss[hit] = np.where(
                np.isfinite(old), (1 - LOSS_MEMORY) * old + LOSS_MEMORY * mean, mean
            )

    def spread(self) -> tuple[float, float] | None:
        """(least, most) often a window is drawn relative to uniform, for fixed weights."""
        w = self.fixed
        return None if w is None else (float(w.min() * self.n), float(w.max() * self.n))

    def state_dict(self) -> dict[str, Any]:
        current = self.current.tolist() if self.hard and self.current is not None else None
        return {
            "loss": [None if not np.isfinite(x) else float(x) for x in self.loss],
            "drawn": self.drawn.tolist(),
            "epoch": self.epoch,
            "weights": current,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("drawn", [])) != self.n:  # another store or an older checkpoint
            return
        self.loss = np.array([np.nan if x is None else x for x in state["loss"]], np.float64)
        self.drawn = np.asarray(state["drawn"], np.int64)
        if self.hard and state.get("weights") is not None:
            self.epoch, self.current = int(state["epoch"]), np.asarray(state["weights"])
