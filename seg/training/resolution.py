"""`model.scale: auto`: the network's resolution chosen from the training scenes' pixel size.

Running the network on windows averaged down 2 x 2 (scale 0.5) makes a step ~4x cheaper, and on
sub-metre imagery, where a building or a road spans tens of pixels, four times the steps won
(docs/recipe.md rows 9, 21, 28, on kampala at 7.5 cm and vegas at 0.3 m). On 5 m NAIP
imagery the texture that tells a lake from a crop field lives at the pixel, and halving the
resolution cost 0.14 mIoU (rows 59-60). So: half resolution on imagery of 1 m or finer (the
network's pixels stay at `seg.data.pixel_size.COARSEST_NETWORK_GSD_M` or finer), full resolution
on coarser imagery.
Between 1 and 5 m nothing was measured: the bound is a judgement that objects of a few metres
still span several pixels at 2 m.
Scenes without a georeference (pixel space) or a stated GSD are judged by their labels instead:
the mIoU a mask keeps when drawn at half resolution (each 2 x 2 block its majority class, back at
full size) is about what a half-resolution network can draw (its logits are interpolated back,
so a little finer than blocks, but not a one-pixel line). Kampala's buildings keep 0.973,
vegas's roads 0.964, atlanta's buildings 0.963 (half resolution won on all three); naip's 5 m
classes keep 0.897, where half resolution lost 0.14 (docs/recipe.md rows 59-60, 140). Labels
that keep less than `KEEPS_AT_HALF` train at full resolution.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

import numpy as np

from seg.config import TrainConfig
from seg.data.dataset import TrainData, WindowDataset, scene_facts
from seg.data.pixel_size import fine_enough, scene_gsd
from seg.data.sampling import MaskSource
from seg.data.scene_metadata import SceneFacts
from seg.data.window_prep import Normalisation
from seg.evaluation.metrics import confusion_matrix, scores

HALF = 0.5
KEEPS_AT_HALF = 0.93  # between naip's 0.897 and the 0.963-0.973 of the sub-metre sets
MAX_MASKS = 64  # windows read to judge the labels (one is ~1 ms locally)


def training_gsd(scenes: Sequence[SceneFacts]) -> float | None:
    """The median ground sample distance (metres) of the scenes that state one (a `gsd` in
    the sidecar or tags, else from the georeference); None when none does."""
    metres = [g for g in map(scene_gsd, scenes) if g is not None]
    return statistics.median(metres) if metres else None


def half_resolution_miou(masks: Iterable[np.ndarray], num_classes: int) -> float | None:
    """The mIoU that (S, S) masks keep when each 2 x 2 block is drawn as its majority class
    (ties to the lower class id) and scaled back; None without a labelled pixel."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for mask in masks:
        h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
        m = mask[:h, :w]
        blocks = m.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
        votes = np.stack([(blocks == c).sum(-1) for c in range(num_classes)], -1)  # (h/2, w/2, K)
        coarse = votes.argmax(-1).repeat(2, 0).repeat(2, 1)  # (h, w) again
        confusion += confusion_matrix(coarse, m, num_classes)
    return float(scores(confusion)["miou"]) if confusion.any() else None


def sample_masks(dataset: MaskSource) -> list[np.ndarray]:
    """Up to `MAX_MASKS` of the dataset's window masks, evenly spaced."""
    n = len(dataset)
    picks = np.linspace(0, n - 1, min(n, MAX_MASKS)).round().astype(int)
    return [dataset.read_mask(int(i)) for i in picks]


def auto_scale(gsd_m: float | None, label_miou: float | None = None) -> float:
    """`model.scale` for training scenes of this GSD (None: unknown); without one, for labels
    that keep `label_miou` at half resolution (None: not measured)."""
    if gsd_m is None and label_miou is not None and label_miou < KEEPS_AT_HALF:
        return 1.0
    return HALF if fine_enough(gsd_m, HALF) else 1.0


def resolve_scale(cfg: TrainConfig, data: TrainData) -> TrainConfig:
    """The config with `model.scale: auto` replaced by its number for the training scenes of
    `data` (their facts read only then, their masks only when no scene states its GSD); a
    given scale is kept."""
    if cfg.model.scale != "auto":
        return cfg
    gsd = training_gsd(scene_facts(data, data.train_ids))
    kept = None
    if gsd is None:  # the train split's windows, as training reads them (blocks splits too)
        norm = Normalisation.from_store(data.store, data.train_ids)  # unused by masks
        train = WindowDataset(
            data.path, data.train_ids, norm, store=data.store, split=cfg.data.train_split
        )
        kept = half_resolution_miou(sample_masks(train), len(data.classes))
    model = cfg.model.model_copy(update={"scale": auto_scale(gsd, kept)})
    return cfg.model_copy(update={"model": model})
