"""A trained network wrapped for inference: normalisation, device, mixed precision, TTA.

Everything comes from the checkpoint alone (`seg.checkpoint.CheckpointInfo`): the network, the
bands it reads, the band statistics it was trained with, and the class names. `Predictor` maps
prepared windows (`seg.data.window_prep`) to class probabilities; it knows nothing about scenes,
grids or files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from seg.checkpoint import CheckpointInfo, read_checkpoint
from seg.errors import CheckpointError, ConfigError
from seg.models import build_model
from seg.models.precision import auto_dtype

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
    return auto_dtype(device)


class Predictor:
    """Raw window pixels (B, C, S, S) -> class probabilities (B, K, S, S) float32."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "auto",
        precision: str = "auto",
        tta: bool = False,
    ) -> None:
        self.device = pick_device(device)
        self.autocast = pick_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda" or self.autocast is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.tta = tta

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.autocast is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.autocast):
                yield

    def _forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, S, S) [+ metadata (B, M)] -> softmax probabilities (B, K, S, S) float32."""
        with self._precision():
            logits = self.model(x) if meta is None else self.model(x, meta)
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """Prepared windows (B, C, S, S) float32 (seg.data.window_prep) -> probabilities
        (B, K, S, S) float32. meta: the scene's metadata vector (M,) for a conditioned network
        (seg.data.scene_metadata); without it every field counts as missing."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        if self.device.type == "cuda" or self.autocast is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        m = None
        if meta is not None:
            m = torch.from_numpy(np.asarray(meta, np.float32)).to(self.device)
            m = m.reshape(1, -1).expand(x.shape[0], -1)  # (B, M): one scene, one vector
        if not self.tta:
            return self._forward(x, m).cpu().numpy()
        # Test-time augmentation: flips and a quarter turn, each undone on the output, averaged.
        total = self._forward(x, m)
        total += self._forward(x.flip(-1), m).flip(-1)
        total += self._forward(x.flip(-2), m).flip(-2)
        if x.shape[-1] == x.shape[-2]:
            total += torch.rot90(self._forward(torch.rot90(x, 1, (-2, -1)), m), -1, (-2, -1))
            n = 4
        else:
            n = 3
        return (total / n).cpu().numpy()


def load_network(info: CheckpointInfo, state: dict[str, Any], path: str) -> torch.nn.Module:
    """The checkpoint's segmentation network with its weights (eval mode, on CPU)."""
    model = build_model(info.model)
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: its weights do not fit model {info.name!r} with {info.in_channels} bands and"
            f" {info.num_classes} classes: {_first_reason(exc)}"
        ) from exc
    return model.eval()


def load_predictor(
    checkpoint: str, device: str = "auto", precision: str = "auto", tta: bool = False
) -> tuple[Predictor, CheckpointInfo]:
    """A Predictor and what the checkpoint says about its network (bands, classes, size...)."""
    info, state = read_checkpoint(checkpoint)
    model = load_network(info, state, checkpoint)
    del state
    return Predictor(model, device=device, precision=precision, tta=tta), info


def _first_reason(exc: BaseException) -> str:
    """torch's load_state_dict error says "Error(s) in loading state_dict for Unet:" first and
    the reason on the next lines: keep the reason."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    useful = [s for s in lines if not s.startswith("Error(s) in loading")] or lines
    return " ".join(useful)[:300]
