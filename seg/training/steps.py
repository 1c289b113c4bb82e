"""The contract between the training loop and a model: `StepSpec` (what the loop tells a step)
and `Step` (what one training batch does), plus the optimizer, LR schedule, gradient clipping
and AMP helpers every step shares.

The loop (`seg.training.loop`) owns data, checkpoints, resume, signals, logging, validation,
early stopping and DDP setup; a `Step` owns the network(s), optimizer(s), scheduler(s), AMP
scaler and the per-batch work. Steps by kind are in `seg.training.trainers`; which kind trains
a model is said by the model registry (`seg.models.MODELS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from seg.report import SILENT, Reporter
from seg.training.budget import Horizon

if TYPE_CHECKING:
    from seg.config import TrainConfig


@dataclass
class StepSpec:
    """What the loop tells a step: data shape, device, precision and schedule length."""

    in_channels: int
    num_classes: int
    device: torch.device
    # None = fp32; torch.bfloat16 or torch.float16 = autocast to that type.
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    total_steps: int = 1  # the schedule's first horizon; a budgeted run moves `horizon`
    # DDP: wrap trainable modules with `spec.wrap(module)` (identity when not distributed).
    distributed: bool = False
    device_ids: list[int] | None = None
    # Where a step's warnings go (e.g. pix2pix's collapse warnings); silent by default.
    reporter: Reporter = SILENT
    extra: dict[str, Any] = field(default_factory=dict)
    horizon: Horizon = field(default_factory=lambda: Horizon(1))
    # The metadata conditioner's shape (seg.models.conditioning: widths, mechanism, hidden,
    # dropout); None = a plain network.
    conditioning: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.horizon.steps = max(self.horizon.steps, self.total_steps)

    def model_section(self, cfg: TrainConfig) -> dict[str, Any]:
        """The resolved model section the network is built from (and predict rebuilds it from):
        the config's, plus what the data says (channels, classes, conditioning)."""
        section = {
            **cfg.model.model_dump(mode="json"),
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
        }
        if self.conditioning:
            section["conditioning"] = dict(self.conditioning)
        return section

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=self.device_ids)

    def all_finite(self, loss: torch.Tensor) -> bool:
        """True when `loss` is finite on every DDP rank. Call it before backward: a rank that
        skipped backward while the others ran it would hang DDP's gradient all-reduce."""
        ok = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def autocast(self) -> Any:
        """Autocast context for forward passes (a no-op for fp32)."""
        return torch.autocast(
            device_type=self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )


class Step:
    """Base class of per-batch training work. Subclasses implement the methods that raise.

    Tensors arrive on `spec.device`: image (B, C, H, W) float32 normalised, mask (B, H, W) int64
    with 255 = ignore, and for a conditioned network meta (B, M) float32 (seg.data.scene_metadata;
    None otherwise).
    """

    # Whether train_step can leave each window's loss in `window_losses` (B,) when
    # `keep_window_losses` is set (hard-window sampling needs it).
    measures_windows = False

    def __init__(self, cfg: TrainConfig, spec: StepSpec) -> None:
        self.cfg = cfg
        self.spec = spec
        self.keep_window_losses = False
        self.window_losses: np.ndarray | None = None

    @property
    def generator(self) -> nn.Module:
        """The segmentation network `seg predict` uses, unwrapped (no DDP/compile wrapper):
        (B, C, H, W) -> logits (B, K, H, W). Its state_dict is the checkpoint's `state_dict`."""
        raise NotImplementedError

    def train_step(
        self, image: torch.Tensor, mask: torch.Tensor, meta: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Forward, backward, clip, optimizer step(s) for one batch. Returns scalars to log; must
        contain "loss" (the loop stops the run when it is not finite) and should contain
        "grad_norm". When the loss is not finite the weights must be left untouched."""
        raise NotImplementedError

    def eval_logits(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K, H, W) float32 for validation, without gradients."""
        raise NotImplementedError

    def eval_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> float:
        """Validation loss of `eval_logits` output (NaN when the model has none)."""
        return math.nan

    def step_schedulers(self) -> None:
        """Advance LR scheduler(s) by one optimizer step (called by the loop after train_step)."""
        raise NotImplementedError

    def lr(self) -> float:
        """The current learning rate (of the generator), for logging."""
        raise NotImplementedError

    def scale_lr(self, factor: float) -> None:
        """Multiply the LR of every optimizer, now and for the rest of its schedule."""
        raise NotImplementedError

    def train(self) -> None:
        """Put the module(s) in training mode."""
        raise NotImplementedError

    def eval(self) -> None:
        """Put the module(s) in eval mode."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint entries (seg.checkpoint format): "state_dict" (the generator's weights),
        "optimizer", "scheduler", "scaler", plus any model-specific ones (pix2pix:
        "discriminator", "optimizer_d", "scheduler_d"). Tensors and plain Python only."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint dict (the keys `state_dict()` wrote)."""
        raise NotImplementedError


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of optim.lr at optimizer step `step`: linear warm-up, then cosine decay to
    min_lr_ratio ("cosine"), or the one-cycle shape (start at lr/25, peak after warm-up).

    The warm-up never takes more than a fifth of the schedule: a time-budgeted run that fits
    fewer steps than planned still gets most of its steps at and after the peak."""
    s = cfg.schedule
    warmup = min(s.warmup_steps, max(total_steps, 1) // 5)
    if s.name == "constant":
        return 1.0 if step >= warmup else (step + 1) / (warmup + 1)
    start = 1.0 / 25.0 if s.name == "onecycle" else 0.0
    if step < warmup:
        return start + (1.0 - start) * (step + 1) / (warmup + 1)
    span = max(1, total_steps - warmup)
    t = min(1.0, (step - warmup) / span)
    floor = s.min_lr_ratio if s.name == "cosine" else 1e-4
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, horizon: Horizon) -> Any:
    """A LambdaLR over `horizon.steps` steps, read at every step so that a time-budgeted run
    can move the end (its state_dict is plain numbers: checkpoints load with weights_only)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, horizon.steps)
    )


def scale_scheduler(scheduler: Any, factor: float) -> None:
    """Scale a LambdaLR's LR now and every LR it gives later (its base LRs are in its
    state_dict, so a checkpoint keeps the change)."""
    scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]
    for group in scheduler.optimizer.param_groups:
        group["lr"] *= factor


def clip_and_norm(params: Any, max_norm: float | None) -> float:
    """Clip the global gradient norm (when max_norm is set) and return the norm before clipping."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm is not None else math.inf)
    return float(norm)


def build_scaler(spec: StepSpec) -> torch.amp.GradScaler:
    """A grad scaler only matters for fp16; disabled it is a pass-through."""
    return torch.amp.GradScaler(spec.device.type, enabled=spec.amp_dtype == torch.float16)


def scaled_update(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    params: Any,
    max_norm: float | None,
) -> float:
    """Backward through the scaler, unscale, clip, optimizer step; the grad norm before clipping."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = clip_and_norm(params, max_norm)
    scaler.step(optimizer)
    scaler.update()
    return norm
