"""The network of a run, block by block: what the model page draws.

Built from the run's checkpoint description (no weights needed for shapes), run once on a
zero window of the training size; forward hooks record each block's output shape and every
convolution's and linear layer's multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seg.checkpoint import CheckpointInfo
from seg.models import build_model


@dataclass(frozen=True)
class Block:
    name: str  # the module path in the state dict ("encoder.features.3")
    kind: str  # its class ("InvertedResidual")
    shape: tuple[int, ...]  # output (C, H, W) for one window
    parameters: int
    macs: int  # multiply-adds for one window


@dataclass(frozen=True)
class ModelView:
    name: str
    window: int
    in_channels: int
    num_classes: int
    scale: float
    blocks: tuple[Block, ...]
    parameters: int  # all of the network's, blocks or not
    macs: int


def blocks_of(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Encoder stages, decoder blocks, the head (and a conditioner): the rows of the render."""
    out: list[tuple[str, nn.Module]] = []
    encoder: Any = getattr(net, "encoder", None)
    features = getattr(encoder, "features", None)
    if isinstance(features, nn.Sequential):
        out += [(f"encoder.features.{i}", m) for i, m in enumerate(features)]
    elif encoder is not None:
        out.append(("encoder", encoder))
    decoder: Any = getattr(net, "decoder", None)
    if decoder is not None:
        out += [(f"decoder.blocks.{i}", b) for i, b in enumerate(decoder.blocks)]
    for name in ("segmentation_head", "conditioner"):
        module = getattr(net, name, None)
        if isinstance(module, nn.Module):
            out.append((name, module))
    return out


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_out = module.in_channels // module.groups * kh * kw
        return int(output[0].numel()) * per_out  # output (B, C, H, W): one window's
    if isinstance(module, nn.Linear):
        return int(output[0].numel()) * module.in_features
    return 0


def describe_network(info: CheckpointInfo) -> ModelView:
    net = build_model(info.model).eval()
    rows = blocks_of(net)
    shapes: dict[str, tuple[int, ...]] = {}
    macs: dict[str, int] = {name: 0 for name, _ in rows}
    hooks = []
    for name, block in rows:

        def record(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            tensor = out[-1] if isinstance(out, list | tuple) else out
            if isinstance(tensor, torch.Tensor):
                shapes[name] = tuple(int(x) for x in tensor.shape[1:])

        hooks.append(block.register_forward_hook(record))
        for sub in block.modules():
            if isinstance(sub, nn.Conv2d | nn.Linear):

                def count(m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
                    macs[name] += _macs(m, out)

                hooks.append(sub.register_forward_hook(count))
    window = torch.zeros(1, info.in_channels, info.size, info.size)
    try:
        with torch.no_grad():
            net(window)
    finally:
        for h in hooks:
            h.remove()
    blocks = tuple(
        Block(
            name=name,
            kind=type(block).__name__,
            shape=shapes.get(name, ()),
            parameters=sum(p.numel() for p in block.parameters()),
            macs=macs[name],
        )
        for name, block in rows
    )
    return ModelView(
        name=info.name,
        window=info.size,
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        scale=float(info.model.get("scale", 1.0)),
        blocks=blocks,
        parameters=sum(p.numel() for p in net.parameters()),
        macs=sum(b.macs for b in blocks),
    )
