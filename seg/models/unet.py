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


def load_encoder_weights(model: torch.nn.Module, path: str) -> None:
    """Load MobileNetV2 encoder weights from a local or gs:// file (a state dict saved with
    torch.save or safetensors; keys may carry an "encoder." prefix). Loads with weights_only."""
    import io

    from seg import fs as segfs
    from seg.errors import ConfigError

    try:
        data = segfs.read_bytes(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"model.encoder_weights file {path} does not exist") from exc
    state: Any
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"model.encoder_weights {path} is not a readable state dict: {str(exc)[:200]}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"model.encoder_weights {path} does not hold a state dict")
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    encoder: Any = model.encoder
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"model.encoder_weights {path} does not fit the MobileNetV2 encoder with this band"
            f" count: {str(exc).splitlines()[0][:200]}"
        ) from exc
