"""`seg tile`'s settings (configs/tile.yaml): windows, bands, labels, splits, validated like every
config (unknown keys are errors), with the command-line options layered on top."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field

from seg.config import Section, load_config


class SplitSection(Section):
    """Train/val/test by scene, never by window: fractions with a seed, or explicit scene ids.

    Explicit lists win for the scenes they name; the other scenes are split by the fractions.
    Computed from the full sorted scene list, so every machine of a sharded run agrees.
    """

    # No test split by default: the scenes given to `seg tile` are training ground, and a held-out
    # test is judged on whole scenes with `seg predict` + `seg eval`; a store's test split only
    # took scenes from training (docs/recipe.md rows 73-76: 2 of 4 scenes trained on cost about
    # 0.04-0.09 mIoU against 3 of 4). `test: 0.1` brings one back.
    train: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    val: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    test: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    seed: int = 0
    train_scenes: list[str] = Field(default_factory=list)
    val_scenes: list[str] = Field(default_factory=list)
    test_scenes: list[str] = Field(default_factory=list)
    # When no scene would be held out for validation (one scene, say): split every training
    # scene inside itself instead, by blocks of one window's footprint, with the windows that
    # overlap a held-out block left out of training (no pixel is in both). Recorded per scene.
    blocks: bool = False


class TileConfig(Section):
    """`seg tile` settings (configs/tile.yaml); command-line options override them."""

    size: Annotated[int, Field(ge=32)] = 512
    # None = size (no overlap); size // 2 gives 50 % overlap.
    stride: int | None = None
    allow_gaps: bool = False
    # 1-based band indexes; None = every band except alpha.
    bands: list[Annotated[int, Field(ge=1)]] | None = None
    # Windows with more than this fraction of nodata pixels (of the scene part) are skipped.
    max_nodata: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    classes: list[str] = Field(default_factory=lambda: ["background", "building"])
    # Vector labels: the attribute holding class ids or names (None = every feature is class 1)
    # and the CRS of files that do not say (None = EPSG:4326 for GeoJSON, per RFC 7946;
    # "scene" = the coordinates are in each scene's own CRS).
    label_attr: str | None = None
    label_crs: str | None = None
    # Grow vector labels by this many metres (e.g. road centre lines -> road areas); 0 = as drawn.
    label_buffer: Annotated[float, Field(ge=0.0)] = 0.0
    # Scene id (file stem) -> label path, for names the matching rule cannot pair.
    labels_map: dict[str, str] = Field(default_factory=dict)
    # Tile rasters without a georeference (e.g. GCPs only) in pixel coordinates.
    pixel_space: bool = False
    windows_per_shard: Annotated[int, Field(ge=1)] = 16
    splits: SplitSection = SplitSection()


def tile_config(
    path: str | None,
    overrides: list[str],
    *,
    bands: str | None = None,
    allow_gaps: bool = False,
    pixel_space: bool = False,
    **options: Any,
) -> TileConfig:
    """`seg tile`'s settings: the YAML at `path`, then its command-line options (those given),
    then `--set` overrides. `bands` is "1,2,3"; flags left False do not override the YAML."""
    flags = {**options, "allow_gaps": allow_gaps or None, "pixel_space": pixel_space or None}
    # JSON values are YAML too: strings stay strings (--label-crs 32633), numbers stay numbers.
    items = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    if bands:
        items.append(f"bands=[{bands}]")
    return load_config(TileConfig, path, items + list(overrides))
