"""pix2pix training: the segmentation loss plus lambda x an adversarial loss from a PatchGAN.

`AdversarialStep` is the `Step` (seg.training.steps) for `model.name: pix2pix`. Per batch, with the
generator's softmax P and the one-hot truth T (ignore pixels zeroed in both, see
seg.models.pix2pix):

    1. D, `d_steps` times:  D loss on (image, T) as real and (image, P.detach()) as fake
    2. G, `g_steps` times:  seg_loss(logits, mask) + lambda_adv x G adversarial loss on (image, P)

Every stabiliser is a switch in the `pix2pix` config section (seg.gan_config.Pix2PixSection):
spectral norm in D, PatchGANs at 1-3 scales, one-sided label smoothing, soft labels (uniform or
normal), instance noise on D's inputs annealed linearly to zero, separate optimizers/LRs for G and
D (TTUR), update ratios, randomly flipped labels, and mismatched pairs ("null pictures": a real
image with another window's true mask, shown to D as fake; seg.training.gan_inputs). Randomness
comes from torch's global RNG, which the loop saves and restores, so a resumed CPU run equals a
straight one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seg.classes import IGNORE
from seg.models.pix2pix import (
    build_discriminator,
    discriminator_accuracy,
    discriminator_term,
    feature_distance,
    generator_term,
    gradient_penalty,
    judgements,
    loss_floor,
    one_hot,
    patch_weights,
    scale_features,
)
from seg.training.gan_inputs import mismatched, noisy, soft_targets
from seg.training.gan_watch import CollapseWatch
from seg.training.losses import window_losses
from seg.training.segmentation import SegmentationStep
from seg.training.steps import (
    StepSpec,
    build_scaler,
    build_scheduler,
    scale_scheduler,
    scaled_update,
)

if TYPE_CHECKING:
    from seg.config import TrainConfig


class AdversarialStep(SegmentationStep):
    """UNet-MobileNetV2 generator + PatchGAN discriminator, trained as a conditional GAN.

    The generator side (network, loss, optimizer, scheduler, scaler, evaluation) is
    SegmentationStep's; this class adds the discriminator and the adversarial updates.
    """

    def __init__(self, cfg: TrainConfig, spec: StepSpec) -> None:
        # G first, then D: the order in which they draw their initial weights from the RNG.
        super().__init__(cfg, spec)
        p = cfg.pix2pix
        self.p = p
        d = build_discriminator(
            spec.in_channels,
            spec.num_classes,
            base_channels=p.d_channels,
            layers=p.d_layers,
            norm=p.d_norm,
            spectral_norm=p.spectral_norm,
            scales=p.d_scales,
        ).to(spec.device)
        if spec.channels_last:
            d = d.to(memory_format=torch.channels_last)
        self.d_net = d
        self.d_model: nn.Module = spec.wrap(d)
        # TTUR: D has its own LR; beta1 0.5 is the usual GAN setting (Radford et al. 2015).
        self.optimizer_d = torch.optim.Adam(d.parameters(), lr=p.lr_d, betas=(p.beta1_d, 0.999))
        self.scheduler_d = build_scheduler(self.optimizer_d, cfg, spec.horizon)
        self.scaler_d = build_scaler(spec)
        self.noise_steps = p.instance_noise_steps or max(1, spec.total_steps // 2)
        # Bookkeeping that checkpoints carry so a resumed run logs and anneals identically.
        self.steps_done = 0
        self.watch = CollapseWatch(p, spec.num_classes, spec.reporter)

    # --- the Step contract (generator parts inherited) --------------------------------------

    @property
    def discriminator(self) -> nn.Module:
        return self.d_net

    def train_step(
        self, image: torch.Tensor, mask: torch.Tensor, meta: torch.Tensor | None = None
    ) -> dict[str, float]:
        p = self.p
        image = self._prepare(image)
        valid = (mask != IGNORE).unsqueeze(1).float()  # (B, 1, H, W)
        real = one_hot(mask, self.spec.num_classes)  # (B, K, H, W), zeros at ignore
        cond = image * valid  # D never sees the image where the truth is unknown
        sigma = p.instance_noise * max(0.0, 1.0 - self.steps_done / self.noise_steps)
        stats: dict[str, float] = {"noise": sigma}

        logits = self._generate(image, meta)
        if self.keep_window_losses:  # for hard-window sampling: the generator's CE per window
            self.window_losses = window_losses(logits.detach(), mask).cpu().numpy()
        for _ in range(p.d_steps):
            fake = logits.detach().float().softmax(dim=1) * valid  # (B, K, H, W)
            d_stats = self._d_update(cond, real, fake, valid=valid, sigma=sigma)
            if not math.isfinite(d_stats["d_loss"]):
                return {"loss": math.nan, **d_stats}
            stats.update(d_stats)

        for i in range(p.g_steps):
            if i > 0:
                logits = self._generate(image, meta)
            g_stats = self._g_update(cond, logits, mask, valid=valid, sigma=sigma, real=real)
            stats.update(g_stats)
            if not math.isfinite(g_stats["loss"]):
                return stats
        self.watch.update(stats, logits.detach(), mask, step=self.steps_done)
        self.steps_done += 1
        return stats

    def step_schedulers(self) -> None:
        super().step_schedulers()
        self.scheduler_d.step()

    def scale_lr(self, factor: float) -> None:
        super().scale_lr(factor)
        scale_scheduler(self.scheduler_d, factor)

    def train(self) -> None:
        super().train()
        self.d_model.train()

    def eval(self) -> None:
        super().eval()
        self.d_model.eval()

    def state_dict(self) -> dict[str, Any]:
        # "state_dict" holds the generator only, so `seg predict` loads a pix2pix checkpoint.
        return {
            **super().state_dict(),
            "discriminator": self.d_net.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "scheduler_d": self.scheduler_d.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "adversarial": {"steps_done": self.steps_done, **self.watch.monitor},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "discriminator" not in state:
            # A plain segmentation checkpoint: warm-start G, D starts fresh.
            self.spec.reporter.warn("checkpoint has no discriminator: starting D from scratch")
            return
        self.d_net.load_state_dict(state["discriminator"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])
        extra = dict(state.get("adversarial", {}))
        self.steps_done = int(extra.pop("steps_done", 0))
        monitor = self.watch.monitor
        monitor.update({k: float(v) for k, v in extra.items() if k in monitor})

    # --- the two updates -------------------------------------------------------------------

    def _d_update(
        self,
        cond: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
        *,
        valid: torch.Tensor,
        sigma: float,
    ) -> dict[str, float]:
        p = self.p
        self.d_net.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        t_real, t_fake = soft_targets(p, cond.shape[0], cond.device)
        if p.mismatch_prob > 0:
            fake = mismatched(p, real, fake, valid)
        real_in, fake_in = noisy(real, valid, sigma), noisy(fake, valid, sigma)
        with self.spec.autocast():
            if p.d_norm == "batch":  # batch statistics must not mix real and fake pairs
                outs_real = judgements(self.d_model(noisy(cond, valid, sigma), real_in))
                outs_fake = judgements(self.d_model(noisy(cond, valid, sigma), fake_in))
            else:  # one pass over both halves: same result, better use of the cores
                both_cond = noisy(torch.cat([cond, cond]), torch.cat([valid, valid]), sigma)
                both = judgements(self.d_model(both_cond, torch.cat([real_in, fake_in])))
                outs_real, outs_fake = [o.chunk(2)[0] for o in both], [o.chunk(2)[1] for o in both]
        # One weight grid (B, 1, h, w) per scale; every term is the mean over the scales.
        weights = [patch_weights(valid, o.shape[-2:]) for o in outs_real]
        pairs = list(zip(outs_real, outs_fake, weights, strict=True))
        loss_real = torch.stack(
            [discriminator_term(p.gan_loss, r, t_real, w) for r, _, w in pairs]
        ).mean()
        loss_fake = torch.stack(
            [discriminator_term(p.gan_loss, f, t_fake, w) for _, f, w in pairs]
        ).mean()
        loss = loss_real + loss_fake
        stats = {"d_real": float(loss_real.detach()), "d_fake": float(loss_fake.detach())}
        if p.gan_loss == "wgan-gp":
            gp = gradient_penalty(self.d_net, cond, real, fake)
            loss = loss + p.gp_weight * gp
            stats["d_gp"] = float(gp.detach())
        stats["d_loss"] = float(loss.detach())
        if not self.spec.all_finite(loss):  # every DDP rank skips, or none does
            stats["d_loss"] = math.nan
            return stats
        stats["grad_norm_d"] = scaled_update(
            loss,
            self.optimizer_d,
            self.scaler_d,
            params=self.d_net.parameters(),
            max_norm=self.cfg.optim.grad_clip,
        )
        accuracies = [discriminator_accuracy(p.gan_loss, r, f, w) for r, f, w in pairs]
        stats["d_acc"] = sum(accuracies) / len(pairs)
        # Near 0 when D separates real from fake perfectly (smoothed BCE never reaches 0 itself).
        floors = [
            loss_floor(p.gan_loss, t_real, w) + loss_floor(p.gan_loss, t_fake, w) for w in weights
        ]
        floor = sum(floors) / len(floors)
        stats["d_excess"] = float(loss_real.detach() + loss_fake.detach()) - floor
        return stats

    def _g_update(
        self,
        cond: torch.Tensor,
        logits: torch.Tensor,
        mask: torch.Tensor,
        *,
        valid: torch.Tensor,
        sigma: float,
        real: torch.Tensor,
    ) -> dict[str, float]:
        p = self.p
        seg = self.loss_fn(logits, mask)
        # D is only a critic here: no gradients into its weights (and none to all-reduce).
        self.d_net.requires_grad_(False)
        fake = logits.softmax(dim=1) * valid
        seen, fm = noisy(cond, valid, sigma), p.feature_matching
        with self.spec.autocast():
            if fm:  # D's features on G's pair, and (constants) on the real one, same image
                feats = scale_features(self.d_net, seen, noisy(fake, valid, sigma))
                with torch.no_grad():
                    feats_real = scale_features(self.d_net, seen, noisy(real, valid, sigma))
                out: torch.Tensor | list[torch.Tensor] = [f[-1] for f in feats]
            else:
                out = self.d_net(seen, noisy(fake, valid, sigma))
        adv = torch.stack(
            [
                generator_term(p.gan_loss, o, patch_weights(valid, o.shape[-2:]))
                for o in judgements(out)
            ]
        ).mean()
        lam = self._adaptive_lambda(seg, adv) if p.lambda_adv == "adaptive" else p.lambda_adv
        loss = seg + lam * adv
        stats = {"g_fm": 0.0}
        if fm:
            g_fm = feature_distance(feats_real, feats)
            loss = loss + fm * g_fm
            stats["g_fm"] = float(g_fm.detach())
        stats |= {
            "lambda_adv": float(lam),
            "loss": float(loss.detach()),
            "seg_loss": float(seg.detach()),
            "g_adv": float(adv.detach()),
        }
        if not self.spec.all_finite(loss):
            stats["loss"] = math.nan
            self.d_net.requires_grad_(True)
            return stats
        self.optimizer.zero_grad(set_to_none=True)
        stats["grad_norm"] = self._update_generator(loss)
        self.d_net.requires_grad_(True)
        return stats

    def _adaptive_lambda(self, seg: torch.Tensor, adv: torch.Tensor) -> float:
        """adv_balance x |d seg / d W| / |d adv / d W| at the generator's last conv W (Esser et
        al. 2021), so neither term's gradient swamps the other whatever their scales."""
        last = self.net.get_parameter("segmentation_head.0.weight")  # (K, C, 3, 3)
        (g_seg,) = torch.autograd.grad(seg, last, retain_graph=True)
        (g_adv,) = torch.autograd.grad(adv, last, retain_graph=True)
        ratio = g_seg.float().norm() / (g_adv.float().norm() + 1e-4)
        return float((self.p.adv_balance * ratio).clamp(0.0, 1e4))
