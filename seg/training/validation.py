"""Validation of a training step on the val split, and early stopping on a chosen metric.

Windows are split across DDP ranks and the confusion matrices summed, so every rank sees the
same metrics (and therefore takes the same early-stopping decision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from seg.classes import IGNORE
from seg.config import EarlyStoppingSection, TrainConfig
from seg.data.dataset import WindowDataset
from seg.errors import ConfigError
from seg.evaluation.calibration import Calibration, fit_calibration
from seg.evaluation.metrics import ConfusionMatrix
from seg.training.runtime import Distributed
from seg.training.steps import Step

GLOBAL_METRICS = ("miou", "mf1", "accuracy", "loss")
# The calibration is fitted on every CALIBRATION_STEP-th pixel of every CALIBRATION_STEP-th row
# of the val windows (neighbours say little more), at most CALIBRATION_PIXELS of them, drawn
# evenly from every window (not the first windows only, which may be one scene's).
CALIBRATION_STEP = 4
CALIBRATION_PIXELS = 400_000


def check_metric_name(name: str, classes: list[str]) -> None:
    if name in GLOBAL_METRICS:
        return
    metric, _, cls = name.partition("/")
    if metric in ("iou", "f1", "precision", "recall") and cls in classes:
        return
    raise ConfigError(
        f"early_stopping.metric {name!r} is not a validation metric; use one of"
        f" {list(GLOBAL_METRICS)} or iou/<class> with a class of the store ({classes})"
    )


class Validator:
    def __init__(
        self,
        dataset: WindowDataset,
        cfg: TrainConfig,
        device: torch.device,
        *,
        ddp: Distributed,
        class_names: list[str],
    ) -> None:
        shard = list(range(ddp.rank, len(dataset), ddp.world))  # this rank's share
        batch = cfg.data.val_batch_size or cfg.data.batch_size
        self.loader = DataLoader(
            Subset(dataset, shard), batch_size=batch, num_workers=cfg.data.workers()
        )
        preview = cfg.train.preview_windows
        self.dataset, self.device, self.ddp = dataset, device, ddp
        self.class_names = class_names
        self.preview_ids = list(range(min(preview, len(dataset))))
        self._preview: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        # The posteriors' calibration on the last validation's pixels (None: too few). Not on
        # training windows (a store without a val split), which the network has learnt: fitted
        # there it would read an over-sure network as an unsure one.
        self.calibration: Calibration | None = None
        self.calibrate = dataset.split != cfg.data.train_split

    def run(self, step: Step, should_stop: Any) -> dict[str, Any]:
        """Metrics over this rank's share, summed over ranks. Stops early (returns {}) when
        `should_stop()` turns true, so a SIGTERM during validation is answered in seconds."""
        step.eval()
        cm = ConfusionMatrix(len(self.class_names), self.class_names)
        loss_sum, batches = 0.0, 0
        picked: list[tuple[np.ndarray, np.ndarray]] = []  # (n, K) log-probabilities, (n,) labels
        per_window = CALIBRATION_PIXELS // max(1, len(self.loader.dataset))  # type: ignore[arg-type]
        rng = np.random.default_rng(0)  # its own generator: training's RNG streams stay as they are
        for image, mask, *meta in self.loader:  # meta: [(B, M)] for a conditioned network
            if should_stop():
                return {}
            logits = step.eval_logits(image.to(self.device), _on(meta, self.device))
            mask = mask.to(self.device)
            loss = step.eval_loss(logits, mask)
            if math.isfinite(loss):
                loss_sum, batches = loss_sum + loss, batches + 1
            cm.update(logits.argmax(1).cpu().numpy(), mask.cpu().numpy())
            if self.calibrate:
                picked.append(_pixels(logits, mask, per_window * len(mask), rng))
        totals = torch.tensor([loss_sum, float(batches)], dtype=torch.float64)
        counts = torch.from_numpy(cm.cm)
        if self.ddp.enabled:
            dist.all_reduce(totals)
            dist.all_reduce(counts)
            cm.cm = counts.numpy()
        result = cm.compute()
        result["val_loss"] = float(totals[0] / totals[1]) if totals[1] > 0 else math.nan
        if picked:
            z = np.concatenate([p for p, _ in picked])
            y = np.concatenate([y for _, y in picked])
            self.calibration = fit_calibration(z, y)
        return result

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed run keeps its checkpoint's calibration until it validates again."""
        saved = state.get("calibration")
        self.calibration = Calibration.from_json(saved) if saved else None

    def _preview_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(images (N, C, S, S), truths (N, S, S), meta (N, M) or None) of the fixed first val
        windows, read once: the same windows every epoch."""
        if self._preview is None:
            items = [self.dataset[i] for i in self.preview_ids]
            meta = torch.stack([it[2] for it in items]) if len(items[0]) > 2 else None
            self._preview = (torch.stack([it[0] for it in items]),
                             torch.stack([it[1] for it in items]), meta)  # fmt: skip
        return self._preview

    def preview_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The preview windows as the network takes them: images and metadata (or None)."""
        images, _, meta = self._preview_batch()
        return images, meta

    def preview(self, step: Step) -> np.ndarray | None:
        """image | truth | prediction for the fixed first val windows (call on rank 0)."""
        from seg.training.logbook import preview_grid

        if not self.preview_ids:
            return None
        images, truths, meta = self._preview_batch()
        on = None if meta is None else meta.to(self.device)
        preds = step.eval_logits(images.to(self.device), on).argmax(1).cpu()
        return preview_grid(images.numpy(), truths.numpy(), preds.numpy())


def _pixels(
    logits: torch.Tensor, mask: torch.Tensor, limit: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) logits and (B, H, W) labels -> every CALIBRATION_STEP-th labelled pixel, or
    `limit` of them drawn at random: (n, K) log-probabilities and (n,) labels."""
    s = CALIBRATION_STEP
    z = torch.log_softmax(logits[:, :, ::s, ::s].float(), dim=1)
    y = mask[:, ::s, ::s]
    keep = (y != IGNORE) & (y < logits.shape[1])
    # (B, K, h, w) -> (B, h, w, K) -> (n, K) at the labelled pixels
    z_np, y_np = z.permute(0, 2, 3, 1)[keep].cpu().numpy(), y[keep].long().cpu().numpy()
    if len(y_np) > limit:
        pick = np.sort(rng.choice(len(y_np), limit, replace=False))
        z_np, y_np = z_np[pick], y_np[pick]
    return z_np, y_np


def _on(meta: list[torch.Tensor], device: torch.device) -> torch.Tensor | None:
    """A batch's metadata (B, M) on `device`, or None for a plain network."""
    return meta[0].to(device) if meta else None


@dataclass
class EarlyStopping:
    """Tracks the best value of a metric and the epochs since it improved."""

    section: EarlyStoppingSection
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, value: float, epoch: int, *, final: bool = False) -> bool:
        """Record an epoch's value; True when it is a new best. `final` (the end of a budgeted
        run) is the best whatever came before."""
        delta = self.section.min_delta
        if final or self.best is None:
            better = True
        elif self.section.mode == "max":
            better = value > self.best + delta
        else:
            better = value < self.best - delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.section.enabled and self.bad_epochs >= self.section.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", -1))
        self.bad_epochs = int(state.get("bad_epochs", 0))
