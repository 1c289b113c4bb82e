"""UNet with a MobileNetV2 encoder (segmentation_models_pytorch), random init by default."""

from __future__ import annotations

import math
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from seg.errors import ConfigError
from seg.models.conditioning import Conditioner, film

STRIDE = 32  # the encoder halves the input 5 times: inputs must be multiples of 32
# smp's own widths: what checkpoints written before `model.decoder_channels` existed hold.
SMP_DECODER = (256, 128, 64, 32, 16)


class UNet(smp.Unet):
    """smp's UNet-MobileNetV2, run at `scale` of the input's resolution, optionally conditioned
    on scene metadata.

    With scale < 1 the image is averaged down (area interpolation) before the network and the
    logits are interpolated back (bilinear) to the input's size, so the loss and the mask live
    on the native grid: labels are never resampled, and `seg predict` writes native pixels. A
    step then costs about scale^2 of a native one. The weights' names are smp's own; a
    conditioned network adds `conditioner.*` (seg.models.conditioning).
    """

    def __init__(
        self,
        *,
        scale: float = 1.0,
        conditioning: dict[str, Any] | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        # smp's Unet takes no decoder dropout (0.6 drops an unknown `decoder_dropout` silently):
        # whole channels of the decoder's last features, before the head. No weights: the
        # checkpoint's keys do not depend on it.
        self.head_dropout = torch.nn.Dropout2d(float(dropout))
        self.conditioner: Conditioner | None = None
        if conditioning:
            mechanism = str(conditioning.get("mechanism", "film"))
            decoder = [int(b.conv2[0].out_channels) for b in self.decoder.blocks]
            deepest = [int(self.encoder.out_channels[-1])]
            self.conditioner = Conditioner(
                [int(w) for w in conditioning["widths"]],
                decoder if mechanism == "film" else deepest,
                mechanism=mechanism,
                hidden=int(conditioning.get("hidden", 64)),
                dropout=float(conditioning.get("dropout", 0.0)),
            )

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if self.scale == 1.0:
            return self._logits(x, meta)
        size = x.shape[-2:]
        k = round(1.0 / self.scale)
        if abs(k * self.scale - 1.0) < 1e-9:  # 1/k: k x k means, an AveragePool in ONNX too
            small = F.avg_pool2d(x, k)  # (B, C, H/k, W/k)
        else:
            shape = (round(size[0] * self.scale), round(size[1] * self.scale))
            small = F.interpolate(x, size=shape, mode="area")  # (B, C, sH, sW)
        logits = self._logits(small, meta)  # (B, K, sH, sW)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def _logits(self, x: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        if self.conditioner is None:
            return self.segmentation_head(self.head_dropout(self.decoder(self.encoder(x))))
        if meta is None:  # no metadata at all: every field takes its "missing" embedding
            meta = self.conditioner.blank(x.shape[0], x.device)
        params = self.conditioner(meta)
        features = self.encoder(x)
        if self.conditioner.mechanism == "deep":
            deep = params[0].to(features[-1].dtype)[:, :, None, None]  # (B, C, 1, 1)
            y = self.decoder([*features[:-1], features[-1] + deep])
            return self.segmentation_head(self.head_dropout(y))
        # smp's UnetDecoder.forward, with FiLM after every block.
        decoder: Any = self.decoder
        shapes = [f.shape[2:] for f in features][::-1]
        deep_first = features[1:][::-1]  # the skip at full resolution is not used
        skips = deep_first[1:]
        y = decoder.center(deep_first[0])
        for i, block in enumerate(decoder.blocks):
            height, width = shapes[i + 1]
            skip = skips[i] if i < len(skips) else None
            y = film(block(y, height, width, skip_connection=skip), params[i])
        return self.segmentation_head(self.head_dropout(y))


def build_unet(section: dict[str, Any]) -> torch.nn.Module:
    """(B, in_channels, H, W) -> logits (B, num_classes, H, W); H * scale, W * scale multiples
    of 32 (`check_scale`).

    Nothing is downloaded: `encoder_weights=None` always; a weights file is loaded by the trainer.
    """
    return UNet(
        scale=float(section.get("scale", 1.0)),
        encoder_name="mobilenet_v2",
        encoder_weights=None,
        in_channels=int(section["in_channels"]),
        classes=int(section["num_classes"]),
        decoder_channels=tuple(section.get("decoder_channels") or SMP_DECODER),
        decoder_use_norm="batchnorm" if section.get("batchnorm", True) else None,
        dropout=float(section.get("dropout", 0.0)),
        conditioning=section.get("conditioning"),
    )


def check_scale(scale: float, sizes: dict[str, int]) -> None:
    """Refuse a `model.scale` at which a window (or training crop) is not a whole multiple of
    the network's stride; the message names the smallest scale that works for all of them.

    sizes: what each input size is called in the message -> its native size in pixels."""
    for what, size in sizes.items():
        scaled = size * scale
        if abs(scaled - round(scaled)) > 1e-6 or round(scaled) % STRIDE or round(scaled) < STRIDE:
            # Valid scales are the multiples of 32 / gcd(sizes): size * that is 32 * (size / gcd).
            smallest = STRIDE / math.gcd(*sizes.values())
            raise ConfigError(
                f"model.scale {scale:g} makes the {size} px {what} {scaled:g} px, not a multiple"
                f" of the network's stride {STRIDE}; the smallest valid scale is {smallest:g}"
                f" (and its multiples up to 1)"
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
