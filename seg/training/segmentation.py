"""`SegmentationStep`: a segmentation network trained with the configured loss under AMP
(bf16 on CPU, fp16 + GradScaler on CUDA), channels_last, optional torch.compile and DDP."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seg.models import build_model
from seg.training.ema import WeightAverage
from seg.training.losses import build_loss, window_losses
from seg.training.steps import (
    Step,
    StepSpec,
    build_optimizer,
    build_scaler,
    build_scheduler,
    scale_scheduler,
    scaled_update,
)

if TYPE_CHECKING:
    from seg.config import TrainConfig


class SegmentationStep(Step):
    """UNet-MobileNetV2 trained with the configured loss; AMP (bf16/fp16 + GradScaler)."""

    measures_windows = True

    def __init__(self, cfg: TrainConfig, spec: StepSpec) -> None:
        super().__init__(cfg, spec)
        net = build_model(spec.model_section(cfg)).to(spec.device)
        if spec.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.model: nn.Module = spec.wrap(net)
        self.forward: Any = torch.compile(self.model) if spec.compile else self.model
        self.loss_fn = build_loss(cfg.loss, spec.num_classes, spec.device)
        self.optimizer = build_optimizer(net.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, spec.horizon)
        self.scaler = build_scaler(spec)
        decay = cfg.train.ema_decay
        self.ema = WeightAverage(net, decay) if decay else None

    @property
    def generator(self) -> nn.Module:
        return self.net

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return (
            image.contiguous(memory_format=torch.channels_last)
            if self.spec.channels_last
            else image
        )

    def _generate(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Training forward of the (wrapped, maybe compiled) network: float32 logits."""
        with self.spec.autocast():
            out = self.forward(image) if meta is None else self.forward(image, meta)
            return out.float()

    def _update_generator(self, loss: torch.Tensor) -> float:
        """Backward + step of the generator's optimizer (and its weight average); the grad
        norm before clipping."""
        norm = scaled_update(
            loss,
            self.optimizer,
            self.scaler,
            params=self.net.parameters(),
            max_norm=self.cfg.optim.grad_clip,
        )
        if self.ema:
            self.ema.update(self.net)
        return norm

    def train_step(
        self, image: torch.Tensor, mask: torch.Tensor, meta: torch.Tensor | None = None
    ) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._generate(self._prepare(image), meta)
        loss = self.loss_fn(logits, mask)
        if self.keep_window_losses:  # for hard-window sampling (seg.training.window_draws)
            self.window_losses = window_losses(logits.detach(), mask).cpu().numpy()
        if not self.spec.all_finite(loss):
            value = float(loss.detach())
            return {"loss": value if not math.isfinite(value) else math.nan}
        grad_norm = self._update_generator(loss)
        return {"loss": float(loss.detach()), "grad_norm": grad_norm}

    @torch.no_grad()
    def eval_logits(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        net = self.ema.evaluated(self.net) if self.ema else self.net
        with self.spec.autocast():
            logits = net(self._prepare(image)) if meta is None else net(self._prepare(image), meta)
        return logits.float()

    @torch.no_grad()
    def eval_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> float:
        return float(self.loss_fn(logits, mask))

    def step_schedulers(self) -> None:
        self.scheduler.step()

    def scale_lr(self, factor: float) -> None:
        scale_scheduler(self.scheduler, factor)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        state = {
            "state_dict": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.ema:  # "state_dict" is what predict, export and init_from use: the average
            state["raw_state_dict"] = state["state_dict"]
            state["state_dict"] = self.ema.evaluated(self.net).state_dict()
            state.update(self.ema.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema and "raw_state_dict" in state:
            self.net.load_state_dict(state["raw_state_dict"])
            self.ema.load(state["state_dict"], int(state["ema_updates"]))
        else:  # a run without an average (or resumed with ema_decay newly set)
            self.net.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
