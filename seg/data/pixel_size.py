"""A scene's ground sample distance, and the coarsest pixel seg runs its network at.

Two choices rest on the network's pixel size on the ground: `model.scale: auto` (training at
half resolution; seg.training.resolution) and the coarse pass of `seg predict`
(seg.inference.coarse_pass, a second look at half the network's resolution). Both keep the
network's pixels at `COARSEST_NETWORK_GSD_M` or finer: 10 m pixels on 5 m NAIP imagery lost the
texture that tells a lake from a crop field (docs/recipe.md rows 59-60, and row 103 for the coarse
pass), while 0.3 m (kampala) and 1.2 m (vegas) pixels did well. A scene without a georeference
or a stated GSD counts as fine imagery, the kind every sub-metre set measured here is.
"""

from __future__ import annotations

from seg.data.scene_metadata import SceneFacts, read_values
from seg.metadata_config import MetadataField

COARSEST_NETWORK_GSD_M = 2.0  # the network's pixels may be this coarse on the ground, no more
TOLERANCE = 1.05  # 1 m imagery stated as 1.02 m is still 1 m imagery


def scene_gsd(facts: SceneFacts) -> float | None:
    """The scene's ground sample distance in metres (a `gsd` in its sidecar or tags, else from
    its georeference); None when it states none (pixel space)."""
    value = read_values([MetadataField(name="gsd")], facts)["gsd"]
    return float(value) if isinstance(value, float) else None


def fine_enough(gsd_m: float | None, scale: float) -> bool:
    """Whether a network run at `scale` of imagery of `gsd_m` metres (None: unknown) sees pixels
    of `COARSEST_NETWORK_GSD_M` or finer."""
    return gsd_m is None or gsd_m / scale <= COARSEST_NETWORK_GSD_M * TOLERANCE
