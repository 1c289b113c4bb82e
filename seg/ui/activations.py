"""A layer's activations for one of a run's preview windows, as a grid of feature maps.

The window is read from RUN/previews/windows.npz (prepared as validation prepared it), the
weights from the run's best.pt (else last.pt), loaded with weights_only. A forward hook on the
chosen block keeps its output (1, C, H, W); the MAX_MAPS channels with the largest spread are
drawn, each min-max scaled on its own, in channel order, with the window itself first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from seg import fs as segfs
from seg.checkpoint import read_checkpoint
from seg.errors import InputError
from seg.inference.predictor import load_network
from seg.training.logbook import display_image
from seg.training.preview_windows import read_windows
from seg.ui.model_view import blocks_of

MAX_MAPS = 63  # with the window itself: an 8 x 8 grid
TILE = 96  # px per map in the grid
GAP = 2
# viridis at five stops: feature maps read as heat, not as a grey photograph
_STOPS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32
)


@dataclass(frozen=True)
class Activations:
    layer: str
    window: int
    shape: tuple[int, ...]  # the block's output (C, H, W)
    channels: tuple[int, ...]  # the channels drawn, in grid order after the window
    png: bytes


def checkpoint_of(run_dir: str) -> str | None:
    """The run's best.pt, else its last.pt; None before its first checkpoint."""
    for name in ("best.pt", "last.pt"):
        path = segfs.join(run_dir, name)
        if segfs.exists(path):
            return path
    return None


def window_count(run_dir: str) -> int:
    """How many preview windows the run kept (0 when none yet)."""
    try:
        return len(read_windows(run_dir)[0])
    except InputError:
        return 0


def _colour(plane: np.ndarray) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 through the viridis stops, min-max scaled."""
    lo, hi = float(plane.min()), float(plane.max())
    t = (plane - lo) / (hi - lo) if hi > lo else np.zeros_like(plane)
    pos = t * (len(_STOPS) - 1)
    i = np.clip(pos.astype(np.int64), 0, len(_STOPS) - 2)
    frac = (pos - i)[..., None]
    return (_STOPS[i] * (1 - frac) + _STOPS[i + 1] * frac).astype(np.uint8)


def _tile(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb).resize((TILE, TILE), Image.Resampling.NEAREST)


def grid_png(window: np.ndarray, maps: np.ndarray) -> tuple[bytes, tuple[int, ...]]:
    """window (C, S, S) and a block's output (C', H, W) -> PNG of the window then the chosen
    maps, and the channels chosen."""
    spread = maps.reshape(len(maps), -1).std(axis=1)  # (C',)
    chosen = tuple(sorted(int(c) for c in np.argsort(-spread, kind="stable")[:MAX_MAPS]))
    tiles = [_tile(display_image(window).transpose(1, 2, 0))]
    tiles += [_tile(_colour(maps[c])) for c in chosen]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = -(-len(tiles) // cols)
    step = TILE + GAP
    sheet = Image.new("RGB", (cols * step - GAP, rows * step - GAP), (255, 255, 255))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % cols) * step, (k // cols) * step))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue(), chosen


def activations(run_dir: str, *, layer: str, window: int) -> Activations:
    """The grid of `layer`'s feature maps for preview window `window` of the run."""
    images, meta = read_windows(run_dir)
    if not 0 <= window < len(images):
        raise InputError(f"window {window} is not one of the run's {len(images)} preview windows")
    path = checkpoint_of(run_dir)
    if path is None:
        raise InputError(f"{run_dir} has no checkpoint yet (best.pt or last.pt)")
    info, state = read_checkpoint(path)
    net = load_network(info, state, path)
    del state
    blocks = dict(blocks_of(net))
    if layer not in blocks:
        raise InputError(f"no layer {layer!r} in {info.name}; choose one of {list(blocks)}")
    if images.shape[1] != info.in_channels:
        raise InputError(
            f"the preview windows have {images.shape[1]} bands and {path} takes"
            f" {info.in_channels}: the run folder mixes two runs"
        )
    kept: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: Any, out: Any) -> None:
        tensor = out[-1] if isinstance(out, list | tuple) else out
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 4:
            kept.append(tensor[0].float())  # (C, H, W) of the single window

    hook = blocks[layer].register_forward_hook(keep)
    x = torch.from_numpy(images[window : window + 1])  # (1, C, S, S)
    try:
        with torch.no_grad():
            net(x) if meta is None else net(x, torch.from_numpy(meta[window : window + 1]))
    finally:
        hook.remove()
    if not kept:
        raise InputError(f"layer {layer!r} gives no feature maps (it is not a 2-D block)")
    maps = kept[-1].numpy()
    png, chosen = grid_png(images[window], maps)
    return Activations(layer, window, tuple(int(s) for s in maps.shape), chosen, png)
