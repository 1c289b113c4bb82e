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
        # A conditioned network's export takes "meta" (B, M) too (seg.inference.export).
        shapes = {i.name: i.shape for i in session.get_inputs()}
        self.meta_size = int(shapes["meta"][1]) if "meta" in shapes else 0

    def _forward(self, x: np.ndarray, meta: np.ndarray | None) -> np.ndarray:
        feed = {"image": np.ascontiguousarray(x, np.float32)}
        if self.meta_size:
            # No vector: every field "missing" (zero codes, zero presence flags).
            row = np.zeros(self.meta_size, np.float32) if meta is None else meta
            feed["meta"] = np.ascontiguousarray(np.broadcast_to(row, (len(x), self.meta_size)))
        (logits,) = self.session.run(["logits"], feed)
        return _softmax(logits.astype(np.float32))

    def __call__(self, batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        """meta: the scene's metadata vector (M,) for a conditioned network."""
        if not self.tta:
            return self._forward(batch, meta)
        # The same test-time augmentation as the torch Predictor: flips and a quarter turn.
        total = self._forward(batch, meta)
        total += self._forward(batch[..., ::-1], meta)[..., ::-1]
        total += self._forward(batch[..., ::-1, :], meta)[..., ::-1, :]
        n = 3
        if batch.shape[-1] == batch.shape[-2]:
            turned = np.rot90(batch, 1, axes=(-2, -1))
            total += np.rot90(self._forward(turned, meta), -1, axes=(-2, -1))
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
