"""Model registry: a config's model section -> an `nn.Module` that maps (B, C, H, W) to logits
(B, K, H, W). pix2pix adds a discriminator for training only; its generator is this network."""

from __future__ import annotations

from typing import Any

import torch

from seg.errors import ConfigError

SEGMENTATION_MODELS = ("unet_mobilenetv2", "pix2pix")


def build_model(section: dict[str, Any]) -> torch.nn.Module:
    """Build the segmentation network described by a resolved model config section."""
    name = section.get("name")
    if name not in SEGMENTATION_MODELS:
        raise ConfigError(f"unknown model.name {name!r}; choose one of {list(SEGMENTATION_MODELS)}")
    from seg.models.unet import build_unet

    return build_unet(section)
