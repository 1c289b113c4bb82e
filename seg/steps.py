"""Per-batch training work, chosen by `model.name`: the contract between the loop and a model.

The loop (`seg.train`) owns data, checkpoints, resume, signals, logging, validation, early
stopping and DDP setup; a `Step` owns the network(s), optimizer(s), scheduler(s), AMP scaler and
what one training batch does. To add a model family, subclass `Step`, and name its class in
`STEP_CLASSES` (a "module:Class" string, imported lazily so a missing optional module only
matters to the users of that model):

    "pix2pix": "seg.adversarial:AdversarialStep"

`Step.__init__(cfg, spec)` receives the resolved `TrainConfig` and a `StepSpec`.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seg.errors import ConfigError
from seg.losses import build_loss

if TYPE_CHECKING:
    from seg.config import TrainConfig

STEP_CLASSES: dict[str, str] = {
    "unet_mobilenetv2": "seg.steps:SegmentationStep",
    "pix2pix": "seg.adversarial:AdversarialStep",
}


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
    total_steps: int = 1
    # DDP: wrap trainable modules with `spec.wrap(module)` (identity when not distributed).
    distributed: bool = False
    device_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
    with 255 = ignore.
    """

    def __init__(self, cfg: TrainConfig, spec: StepSpec) -> None:
        self.cfg = cfg
        self.spec = spec

    @property
    def generator(self) -> nn.Module:
        """The segmentation network `seg predict` uses, unwrapped (no DDP/compile wrapper):
        (B, C, H, W) -> logits (B, K, H, W). Its state_dict is the checkpoint's `state_dict`."""
        raise NotImplementedError

    def train_step(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """Forward, backward, clip, optimizer step(s) for one batch. Returns scalars to log; must
        contain "loss" (the loop stops the run when it is not finite) and should contain
        "grad_norm". When the loss is not finite the weights must be left untouched."""
        raise NotImplementedError

    def eval_logits(self, image: torch.Tensor) -> torch.Tensor:
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


def build_step(cfg: TrainConfig, spec: StepSpec) -> Step:
    """The step class registered for `cfg.model.name`, constructed."""
    target = STEP_CLASSES.get(cfg.model.name)
    if target is None:
        raise ConfigError(
            f"model.name {cfg.model.name!r} has no training step;"
            f" choose one of {list(STEP_CLASSES)}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not available in this install ({exc})"
        ) from exc
    step: Step = cls(cfg, spec)
    return step


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of optim.lr at optimizer step `step`: linear warm-up, then cosine decay to
    min_lr_ratio ("cosine"), or the one-cycle shape (start at lr/25, peak after warm-up)."""
    s = cfg.schedule
    if s.name == "constant":
        return 1.0 if step >= s.warmup_steps else (step + 1) / (s.warmup_steps + 1)
    start = 1.0 / 25.0 if s.name == "onecycle" else 0.0
    if step < s.warmup_steps:
        return start + (1.0 - start) * (step + 1) / (s.warmup_steps + 1)
    span = max(1, total_steps - s.warmup_steps)
    t = min(1.0, (step - s.warmup_steps) / span)
    floor = s.min_lr_ratio if s.name == "cosine" else 1e-4
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """A LambdaLR (its state_dict is plain numbers, so checkpoints load with weights_only)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, total_steps)
    )


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


class SegmentationStep(Step):
    """UNet-MobileNetV2 trained with the configured loss; AMP (bf16/fp16 + GradScaler)."""

    def __init__(self, cfg: TrainConfig, spec: StepSpec) -> None:
        super().__init__(cfg, spec)
        from seg.models.unet import build_unet

        section = {
            **cfg.model.model_dump(),
            "in_channels": spec.in_channels,
            "num_classes": spec.num_classes,
        }
        net = build_unet(section).to(spec.device)
        if spec.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.model: nn.Module = spec.wrap(net)
        self.forward: Any = torch.compile(self.model) if spec.compile else self.model
        self.loss_fn = build_loss(cfg.loss, spec.num_classes, spec.device)
        self.optimizer = build_optimizer(net.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, spec.total_steps)
        self.scaler = build_scaler(spec)

    @property
    def generator(self) -> nn.Module:
        return self.net

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return (
            image.contiguous(memory_format=torch.channels_last)
            if self.spec.channels_last
            else image
        )

    def _generate(self, image: torch.Tensor) -> torch.Tensor:
        """Training forward of the (wrapped, maybe compiled) network: float32 logits."""
        with self.spec.autocast():
            return self.forward(image).float()

    def _update_generator(self, loss: torch.Tensor) -> float:
        """Backward + step of the generator's optimizer; the grad norm before clipping."""
        return scaled_update(
            loss, self.optimizer, self.scaler, self.net.parameters(), self.cfg.optim.grad_clip
        )

    def train_step(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self._generate(self._prepare(image)), mask)
        if not self.spec.all_finite(loss):
            value = float(loss.detach())
            return {"loss": value if not math.isfinite(value) else math.nan}
        grad_norm = self._update_generator(loss)
        return {"loss": float(loss.detach()), "grad_norm": grad_norm}

    @torch.no_grad()
    def eval_logits(self, image: torch.Tensor) -> torch.Tensor:
        with self.spec.autocast():
            logits = self.net(self._prepare(image))
        return logits.float()

    @torch.no_grad()
    def eval_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> float:
        return float(self.loss_fn(logits, mask))

    def step_schedulers(self) -> None:
        self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        return {
            "state_dict": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
