"""An ONNX export (`seg export --format onnx`) run by ONNX Runtime on the CPU: the same
contract as `Predictor` (prepared windows in, class probabilities out), so `seg predict`,
its stitcher and its outputs are unchanged (`seg predict --runtime onnx`, or an .onnx file)."""

from __future__ import annotations

from typing import Any

import numpy as np

from seg import fs as segfs
from seg.checkpoint import CheckpointInfo
from seg.errors import CheckpointError, ConfigError
from seg.inference.export import META, info_from_json


def _softmax(logits: np.ndarray) -> np.ndarray:
    """(B, K, H, W) -> probabilities over K, float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=1, keepdims=True)


class OnnxPredictor:
    """Prepared windows (B, C, S, S) float32 -> probabilities (B, K, S, S) float32."""

    def __init__(self, session: Any, tta: bool = False) -> None:
        self.session, self.tta = session, tta

    def _forward(self, x: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"image": np.ascontiguousarray(x, np.float32)})
        return _softmax(logits.astype(np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.tta:
            return self._forward(batch)
        # The same test-time augmentation as the torch Predictor: flips and a quarter turn.
        total = self._forward(batch)
        total += self._forward(batch[..., ::-1])[..., ::-1]
        total += self._forward(batch[..., ::-1, :])[..., ::-1, :]
        n = 3
        if batch.shape[-1] == batch.shape[-2]:
            turned = np.rot90(batch, 1, axes=(-2, -1))
            total += np.rot90(self._forward(turned), -1, axes=(-2, -1))
            n = 4
        return total / n


def load_onnx(
    path: str, device: str = "auto", tta: bool = False
) -> tuple[OnnxPredictor, CheckpointInfo]:
    """An ONNX export as a predictor and its description."""
    if device not in ("auto", "cpu"):
        raise ConfigError(f"--runtime onnx runs on the CPU here; drop --device {device}")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(
            "--runtime onnx needs ONNX Runtime: pip install 'seg[onnx]' (or onnxruntime)"
        ) from exc
    data = segfs.read_bytes(path)
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(f"{path} is not a readable ONNX model ({reason})") from exc
    meta = session.get_modelmeta().custom_metadata_map
    if META not in meta:
        raise CheckpointError(f"{path} is an ONNX model but not a seg export (no 'seg' metadata)")
    return OnnxPredictor(session, tta=tta), info_from_json(meta[META], path)
