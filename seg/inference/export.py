"""`seg export CKPT --format onnx|torchscript|safetensors --out FILE`: an inference-only model.

Each export holds the network's weights and what `seg predict` needs to use them (the
checkpoint's `CheckpointInfo`: bands, band statistics, classes, window size, normalisation,
provenance), never optimizer state:

- **safetensors**: the weights, and the description as JSON in the file's metadata ("seg");
  `seg predict` reads it like a checkpoint (no code in the file, by the format's design);
- **onnx**: the network with a dynamic batch axis at the training window size, checked with
  `onnx.checker`, the description in the model's metadata ("seg"); `seg predict` runs it with
  ONNX Runtime (`seg.inference.onnx_predictor`);
- **torchscript**: a traced module for other runtimes, the description in its extra file
  "seg.json". `seg predict` does not load it: loading TorchScript runs the code inside it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from seg import fs as segfs
from seg.checkpoint import CheckpointInfo, read_checkpoint
from seg.data.scene_metadata import MetadataCodec
from seg.errors import CheckpointError, ConfigError
from seg.inference.predictor import load_network

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors"}
META = "seg"  # the metadata key holding the CheckpointInfo JSON in every export


@dataclass(frozen=True)
class Exported:
    path: str
    format: str
    bytes: int


def info_json(info: CheckpointInfo) -> str:
    return json.dumps(info.to_state())


def info_from_json(text: str, path: str) -> CheckpointInfo:
    try:
        return CheckpointInfo.from_state(json.loads(text), path)
    except ValueError as exc:
        raise CheckpointError(f"{path}: its seg description is not JSON ({exc})") from exc


def export_model(checkpoint: str, fmt: str, out: str) -> Exported:
    """Write the checkpoint's network as `fmt` at `out` (local or gs://), atomically."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of {list(FORMATS)}")
    if os.path.realpath(out) == os.path.realpath(checkpoint):
        raise ConfigError(f"--out {out} is the checkpoint itself; choose another file")
    info, state = read_checkpoint(checkpoint)
    net = load_network(info, state, checkpoint).float().eval()
    del state
    with segfs.local_copy_for_write(out, suffix=SUFFIXES[fmt]) as tmp:
        if fmt == "safetensors":
            _safetensors(net, info, tmp)
        elif fmt == "onnx":
            _onnx(net, info, tmp)
        else:
            _torchscript(net, info, tmp)
        size = os.path.getsize(tmp)
    return Exported(out, fmt, size)


def _safetensors(net: torch.nn.Module, info: CheckpointInfo, path: str) -> None:
    from safetensors.torch import save_file

    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(weights, path, metadata={META: info_json(info)})


def _example(info: CheckpointInfo) -> tuple[torch.Tensor, ...]:
    """The network's example inputs: the image (1, C, S, S) [, the metadata vector (1, M)]."""
    image = torch.zeros(1, info.in_channels, info.size, info.size)
    if info.metadata is None:
        return (image,)
    return image, torch.zeros(1, MetadataCodec.from_json(info.metadata).size)


def _onnx(net: torch.nn.Module, info: CheckpointInfo, path: str) -> None:
    import onnx

    with tempfile.TemporaryDirectory(prefix="seg-onnx-") as work:
        raw = os.path.join(work, "model.onnx")
        example = _example(info)
        names = ["image", "meta"][: len(example)]
        torch.onnx.export(
            net,
            example,
            raw,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        model = onnx.load(raw)
    entry = model.metadata_props.add()
    entry.key, entry.value = META, info_json(info)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _torchscript(net: torch.nn.Module, info: CheckpointInfo, path: str) -> None:
    with torch.no_grad():
        traced: Any = torch.jit.trace(net, _example(info), check_trace=False)
    torch.jit.save(traced, path, _extra_files={"seg.json": info_json(info)})


def read_safetensors(path: str) -> tuple[CheckpointInfo, dict[str, Any]]:
    """A safetensors export as (description, {"state_dict": weights}), like a checkpoint.

    The format starts with an 8-byte little-endian header length and a JSON header whose
    "__metadata__" holds the description."""
    from safetensors.torch import load

    data = segfs.read_bytes(path)
    try:
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
        weights = load(data)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    if META not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a seg export (no 'seg')")
    return info_from_json(meta[META], path), {"state_dict": weights}
