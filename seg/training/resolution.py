"""`model.scale: auto`: the network's resolution chosen from the training scenes' pixel size.

Running the network on windows averaged down 2 x 2 (scale 0.5) makes a step ~4x cheaper, and on
sub-metre imagery, where a building or a road spans tens of pixels, four times the steps won
(docs/recipe.md rows 9, 21, 28, on kampala at 7.5 cm and vegas at 0.3 m). On 5 m NAIP
imagery the texture that tells a lake from a crop field lives at the pixel, and halving the
resolution cost 0.14 mIoU (rows 59-60). So: half resolution on imagery of 1 m or finer (the
network's pixels stay at `seg.data.pixel_size.COARSEST_NETWORK_GSD_M` or finer), full resolution
on coarser imagery.
Scenes without a georeference (pixel space) or a stated GSD keep the half resolution that won on
every sub-metre set measured. Between 1 and 5 m nothing was measured: the bound is a judgement
that objects of a few metres still span several pixels at 2 m.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from seg.config import TrainConfig
from seg.data.pixel_size import fine_enough, scene_gsd
from seg.data.scene_metadata import SceneFacts

HALF = 0.5


def training_gsd(scenes: Sequence[SceneFacts]) -> float | None:
    """The median ground sample distance (metres) of the scenes that state one (a `gsd` in
    the sidecar or tags, else from the georeference); None when none does."""
    metres = [g for g in map(scene_gsd, scenes) if g is not None]
    return statistics.median(metres) if metres else None


def auto_scale(gsd_m: float | None) -> float:
    """`model.scale` for training scenes of this GSD (None: unknown)."""
    return HALF if fine_enough(gsd_m, HALF) else 1.0


def resolve_scale(cfg: TrainConfig, scenes: Callable[[], Sequence[SceneFacts]]) -> TrainConfig:
    """The config with `model.scale: auto` replaced by its number for the training `scenes`
    (read only then); a given scale is kept."""
    if cfg.model.scale != "auto":
        return cfg
    model = cfg.model.model_copy(update={"scale": auto_scale(training_gsd(scenes()))})
    return cfg.model_copy(update={"model": model})
