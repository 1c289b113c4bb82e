"""What `seg predict -k FILE` accepts: a checkpoint, or an export of one (`seg export`).

- `.pt` (a `seg train` checkpoint) and `.safetensors` exports run on torch (`Predictor`);
- `.onnx` exports run on ONNX Runtime (`OnnxPredictor`), also what `--runtime onnx` asks for;
- TorchScript exports are refused: loading one runs the code inside it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np

from seg.checkpoint import CheckpointInfo
from seg.errors import CheckpointError, ConfigError
from seg.inference.export import read_safetensors
from seg.inference.onnx_predictor import load_onnx
from seg.inference.options import PredictOptions
from seg.inference.predictor import Predictor, load_network, load_predictor

RUNTIMES = ("auto", "torch", "onnx")


class WindowModel(Protocol):
    """Prepared windows (B, C, S, S) float32 -> class probabilities (B, K, S, S) float32; a
    conditioned network also takes the scene's metadata vector (M,)."""

    def __call__(self, batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray: ...


def load_for(path: str, options: PredictOptions) -> tuple[WindowModel, CheckpointInfo]:
    """`load_model` with what `seg predict`'s options say (device, precision, TTA, runtime)."""
    model, info = load_model(
        path,
        device=options.device,
        precision=options.precision,
        tta=options.tta,
        runtime=options.runtime,
    )
    if options.training_stats:
        if info.normalise == "percentile":
            # The checkpoint keeps the training split's mean/std, not a percentile stretch.
            raise ConfigError(
                f"--training-stats takes a model trained with data.normalise scene or global;"
                f" {path} was trained with percentile (each scene's own stretch): predict"
                " without it"
            )
        # Every scene then takes the checkpoint's statistics, as a `global` model's does.
        info = replace(info, normalise="global")
    return model, info


def load_model(
    path: str,
    *,
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
    runtime: str = "auto",
) -> tuple[WindowModel, CheckpointInfo]:
    """The predictor for the file at `path` and what it says about its network."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown --runtime {runtime!r}; choose one of {list(RUNTIMES)}")
    name = str(path).lower()
    if name.endswith((".ts", ".torchscript")):
        raise CheckpointError(
            f"{path} is a TorchScript export, for other runtimes: loading it would run its code;"
            " predict with the checkpoint, or an onnx or safetensors export"
        )
    if name.endswith(".onnx"):
        if runtime == "torch":
            raise ConfigError(f"{path} is an ONNX export: use --runtime onnx (or auto)")
        return load_onnx(path, device=device, tta=tta)
    if runtime == "onnx":
        raise ConfigError(
            f"--runtime onnx takes an ONNX export, not {path}: seg export {path} --format onnx"
            " --out model.onnx"
        )
    if name.endswith(".safetensors"):
        info, state = read_safetensors(path)
        net = load_network(info, state, path)
        return Predictor(net, device=device, precision=precision, tta=tta), info
    return load_predictor(path, device=device, precision=precision, tta=tta)
