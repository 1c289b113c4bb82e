"""UNet with a MobileNetV2 encoder (segmentation_models_pytorch), random init by default."""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch


def build_unet(section: dict[str, Any]) -> torch.nn.Module:
    """(B, in_channels, H, W) -> logits (B, num_classes, H, W); H, W multiples of 32.

    Nothing is downloaded: `encoder_weights=None` always; a weights file is loaded by the trainer.
    """
    return smp.Unet(
        encoder_name="mobilenet_v2",
        encoder_weights=None,
        in_channels=int(section["in_channels"]),
        classes=int(section["num_classes"]),
        decoder_use_norm="batchnorm" if section.get("batchnorm", True) else None,
        decoder_dropout=float(section.get("dropout", 0.0)),
    )
