"""The model registry: one dict, name -> how to build the segmentation network and which kind of
training step trains it (in the style of segmentation-models-pytorch: an unknown name is an
error that lists the valid ones).

Every network maps (B, C, H, W) to logits (B, K, H, W), H and W multiples of 32. pix2pix adds a
discriminator for training only; its generator is the UNet, so `seg predict` runs it unchanged.

May import: the base modules only (no data, no training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from seg.errors import ConfigError
from seg.models.unet import build_unet


@dataclass(frozen=True)
class ModelEntry:
    """How to build a model's segmentation network, and the kind of step that trains it
    ("segmentation" or "adversarial": see `seg.training.trainers`)."""

    build: Callable[[dict[str, Any]], torch.nn.Module]
    trainer: str
    summary: str


MODELS: dict[str, ModelEntry] = {
    "unet_mobilenetv2": ModelEntry(
        build_unet, "segmentation", "UNet with a MobileNetV2 encoder (6.6 M parameters)"
    ),
    "pix2pix": ModelEntry(
        build_unet, "adversarial", "the same UNet as generator + a PatchGAN discriminator"
    ),
}


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name`; a clear error listing the valid names otherwise."""
    entry = MODELS.get(name)
    if entry is None:
        raise ConfigError(f"unknown model.name {name!r}; choose one of {list(MODELS)}")
    return entry


def build_model(section: dict[str, Any]) -> torch.nn.Module:
    """The segmentation network of a resolved model section (name, in_channels, num_classes,
    and the model's own options)."""
    return model_entry(str(section.get("name"))).build(section)
