"""The coarse pass of `seg predict`: each window also through the network at half its
resolution, the probabilities blended in (a multi-scale test-time augmentation).

Measured offline on 25 fixed checkpoints of the recipe, through `seg predict` + `seg eval` on
whole held-out scenes (docs/recipe.md row 103): a third of the weight on a pass at half
resolution lifted kampala (7.5 cm; the network's pixels 15 cm, the coarse pass's 30 cm) by
+0.028, kampala_blocks by +0.020 and vegas (0.3 m; 0.6 and 1.2 m) by +0.018, 17 checkpoints of
18 up. On 5 m NAIP (10 m coarse pixels) it cost 0.019, all seven down; so the pass runs only
where its pixels stay within `seg.data.pixel_size.COARSEST_NETWORK_GSD_M` (2 m), the bound
`model.scale: auto` keeps too; on scenes with no GSD, where the network runs below full
resolution (`model.scale: auto` halves it there only for labels that half resolution keeps).

Each scene's class shares (seg.inference.priors) are estimated from the fine pass alone: the
blended probabilities are softer, and EM reads softer road posteriors as fewer roads (one vegas
checkpoint lost 0.22 mIoU that way). For the same reason the reweighting acts on each pass before
the blend: the factors of the fine pass, applied to the blend, took the roads out (vegas, row 117:
0.646 -> 0.855 and 0.677 -> 0.805 with each pass reweighted).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from seg.checkpoint import CheckpointInfo
from seg.data.pixel_size import fine_enough
from seg.errors import ConfigError
from seg.inference.loading import WindowModel
from seg.models.unet import STRIDE

WEIGHT = 1.0 / 3.0  # of the coarse pass in the blend; the fine pass keeps 2/3


def wanted(mode: str, info: CheckpointInfo, gsd_m: float | None) -> bool:
    """Whether a scene of `gsd_m` metres (None: unknown) gets the coarse pass: `auto` where the
    coarse pass's pixels stay within the bound, or, with no GSD, for a network that runs below
    full resolution (`model.scale: auto` judged its labels fine enough to halve; a network at
    full resolution was judged too fine for that, and the pass halves it again); `on` / `off`
    always / never."""
    if mode == "auto":
        scale = network_scale(info)
        return scale < 1.0 if gsd_m is None else fine_enough(gsd_m, scale / 2)
    return mode == "on"


def for_fixed_input(mode: str) -> str:
    """The mode for a runtime that takes the training window only (an ONNX export): off."""
    if mode == "on":
        raise ConfigError(
            "an ONNX export runs on its training window only: drop --coarse-pass on, or predict"
            " with the checkpoint"
        )
    return "off"


def network_scale(info: CheckpointInfo) -> float:
    """The resolution the network was trained at (`model.scale`; 1.0 in old checkpoints)."""
    scale = info.model.get("scale", 1.0)
    return float(scale) if isinstance(scale, int | float) else 1.0


def fits(height: int, width: int, scale: float) -> bool:
    """Whether windows of this size, halved, still run at `scale` in whole network strides."""
    if height % 2 or width % 2:
        return False
    sides = [height / 2 * scale, width / 2 * scale]
    return all(s % STRIDE == 0 and s >= STRIDE for s in sides)


Probabilities = Callable[[np.ndarray], np.ndarray]


def with_coarse_pass(
    model: WindowModel, scale: float, each: Probabilities | None = None
) -> WindowModel:
    """`model` whose probabilities are 2/3 its own and 1/3 those of the windows averaged 2 x 2,
    run through the same model and resized back (bilinear); `each` (the scene's class-share
    reweighting) is applied to both passes before they are blended."""
    both = fine_and_coarse(model, scale)

    def run(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        fine, up = both(batch, meta)
        if each is not None:
            fine, up = each(fine), each(up)
        return blend(fine, up)

    return run


def blend(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """The two passes' probabilities, (B, K, H, W) each (or (N, K)), weighted into one."""
    return (1.0 - WEIGHT) * fine + WEIGHT * coarse


def fine_and_coarse(
    model: WindowModel, scale: float
) -> Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]:
    """`model`'s own probabilities and those of the windows averaged 2 x 2, resized back, both
    (B, K, H, W); a window the network cannot take at half size gives its fine pass twice."""

    def run(batch: np.ndarray, meta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        fine = model(batch) if meta is None else model(batch, meta)
        b, c, h, w = batch.shape
        if not fits(h, w, scale):
            return fine, fine
        # (B, C, H, W) -> (B, C, H/2, 2, W/2, 2) -> the mean of each 2 x 2 block (B, C, H/2, W/2)
        small = batch.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5), dtype=np.float32)
        coarse = model(small) if meta is None else model(small, meta)  # (B, K, H/2, W/2)
        up = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(coarse)),
            size=(h, w),
            mode="bilinear",
            align_corners=False,
        ).numpy()  # (B, K, H, W)
        return fine, up

    return run


def stacked(model: WindowModel, scale: float) -> WindowModel:
    """For the class-share pass: (B, C, S, S) -> (B, 2K, S, S), the fine pass's probabilities
    then the coarse pass's (`seg.inference.priors.scene_shift` reads both)."""
    pair = fine_and_coarse(model, scale)

    def run(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        return np.concatenate(pair(batch, meta), axis=1)

    return run
