"""What pix2pix training watches for: D winning outright (its loss collapsed to the floor) and
G predicting a single class although the truth has several. Each warns once per episode and
sets the step's `collapsed` figure, which a search's collapse rule reads (seg.jobs.prune)."""

from __future__ import annotations

import math

import torch

from seg.classes import IGNORE
from seg.gan_config import Pix2PixSection
from seg.report import Reporter

EMA = 0.05  # smoothing of the collapse monitors: ~20-step memory


class CollapseWatch:
    """The monitors, carried by checkpoints so a resumed run warns exactly as a straight one."""

    def __init__(self, p: Pix2PixSection, num_classes: int, reporter: Reporter) -> None:
        self.p, self.num_classes, self.reporter = p, num_classes, reporter
        self.monitor = {"d_excess": math.nan, "d_warned": 0.0, "collapse_run": 0.0}

    def update(
        self, stats: dict[str, float], logits: torch.Tensor, mask: torch.Tensor, *, step: int
    ) -> None:
        """Fold one step into the monitors; adds `pred_top_class` and `collapsed` to stats."""
        m, p = self.monitor, self.p
        excess = stats.get("d_excess", math.nan)
        if math.isfinite(excess):
            prev = m["d_excess"]
            m["d_excess"] = excess if not math.isfinite(prev) else (1 - EMA) * prev + EMA * excess
            collapsed = step >= p.collapse_patience and m["d_excess"] < p.d_collapse_loss
            if collapsed and not m["d_warned"]:
                self.reporter.warn(
                    f"step {step}: discriminator loss collapsed towards zero"
                    f" ({m['d_excess']:.4f}): D wins outright; try a lower pix2pix.lr_d, more"
                    " instance_noise, flip_prob or spectral_norm"
                )
            m["d_warned"] = float(collapsed)
        valid = mask != IGNORE
        pred = logits.argmax(dim=1)[valid]
        truth = mask[valid]
        if pred.numel() == 0:
            return
        k = self.num_classes
        top_pred = float(torch.bincount(pred, minlength=k).max()) / pred.numel()
        top_truth = float(torch.bincount(truth.long(), minlength=k).max()) / truth.numel()
        stats["pred_top_class"] = top_pred
        one_class = top_pred > 0.995 and top_truth < 0.95
        m["collapse_run"] = m["collapse_run"] + 1 if one_class else 0.0
        stats["collapsed"] = float(bool(m["d_warned"]) or m["collapse_run"] >= p.collapse_patience)
        if m["collapse_run"] == p.collapse_patience:
            self.reporter.warn(
                f"step {step}: the generator has predicted a single class for"
                f" {p.collapse_patience} steps although the truth has several; try a lower"
                " pix2pix.lambda_adv"
            )
