"""A trained network wrapped for inference: normalisation, device, mixed precision, TTA.

Everything comes from the checkpoint alone: the network, the bands it reads, the band statistics
it was trained with, and the class names. `Predictor` maps raw window pixels to class
probabilities; it knows nothing about scenes, grids or files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from seg.checkpoint import load_checkpoint, model_from_checkpoint
from seg.errors import CheckpointError, ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device cpu"
        )
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown --precision {name!r}; choose one of {list(PRECISIONS)}")
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.float16
    # bf16 autocast is ~3x faster only where the CPU has native bf16 units; elsewhere slower.
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else None


class Predictor:
    """Raw window pixels (B, C, S, S) -> class probabilities (B, K, S, S) float32."""

    def __init__(
        self,
        model: torch.nn.Module,
        mean: np.ndarray,
        std: np.ndarray,
        device: str = "auto",
        precision: str = "auto",
        tta: bool = False,
    ) -> None:
        self.device = pick_device(device)
        self.autocast = pick_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda" or self.autocast is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)  # (C, 1, 1)
        # A constant band has std 0 in training data; dividing by 1 keeps it finite.
        std = np.asarray(std, np.float32)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32).reshape(-1, 1, 1)
        self.tta = tta

    def normalise(self, image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """(C, h, w) raw pixels -> float32 (x - mean) / std, no-data pixels set to 0 (the mean)."""
        x = (image.astype(np.float32) - self.mean) / self.std
        if valid is not None:
            x[:, ~valid] = 0.0
        return x

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.autocast is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.autocast):
                yield

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> softmax probabilities (B, K, S, S) float32."""
        with self._precision():
            logits = self.model(x)
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Normalised windows (B, C, S, S) float32 -> probabilities (B, K, S, S) float32."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        if self.device.type == "cuda" or self.autocast is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.tta:
            return self._forward(x).cpu().numpy()
        # Test-time augmentation: flips and a quarter turn, each undone on the output, averaged.
        total = self._forward(x)
        total += self._forward(x.flip(-1)).flip(-1)
        total += self._forward(x.flip(-2)).flip(-2)
        if x.shape[-1] == x.shape[-2]:
            total += torch.rot90(self._forward(torch.rot90(x, 1, (-2, -1))), -1, (-2, -1))
            n = 4
        else:
            n = 3
        return (total / n).cpu().numpy()


def load_predictor(
    checkpoint: str, device: str = "auto", precision: str = "auto", tta: bool = False
) -> tuple[Predictor, dict[str, Any]]:
    """A Predictor and the checkpoint's description (model, bands, classes, size, dtype)."""
    state = load_checkpoint(checkpoint)
    try:
        stats = state["band_stats"]
        info: dict[str, Any] = {
            "bands": [int(b) for b in state["bands"]],
            "class_names": [str(c) for c in state["class_names"]],
            "size": int(state.get("size") or 512),
            "in_channels": int(state["model"]["in_channels"]),
            "num_classes": int(state["model"]["num_classes"]),
            "dtype": state.get("dtype"),
            "model": dict(state["model"]),
        }
        mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{checkpoint} lacks what prediction needs ({exc}); re-export it with `seg train`"
        ) from exc
    if not (len(mean) == len(std) == len(info["bands"]) == info["in_channels"]):
        raise CheckpointError(
            f"{checkpoint} is inconsistent: {len(info['bands'])} bands, {len(mean)} band"
            f" statistics, model with {info['in_channels']} input channels"
        )
    model = model_from_checkpoint(state)
    del state
    return Predictor(model, mean, std, device=device, precision=precision, tta=tta), info
