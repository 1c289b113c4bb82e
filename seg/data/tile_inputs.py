"""What goes into `seg tile`, checked before anything is written: scenes paired with their label
sources (a folder matched by name, one raster, a vector file, `labels_map`), every header read,
band counts that agree, and class ids the store has names for."""

from __future__ import annotations

import numpy as np

from seg import fs as segfs
from seg.classes import IGNORE
from seg.errors import InputError
from seg.geo.labels import SceneLabels, is_vector, match_labels, stem
from seg.geo.raster import SceneInfo, expand_inputs, open_raster, scene_info
from seg.geo.vectors import VectorLabels
from seg.report import Reporter
from seg.tile_config import TileConfig


def resolve_labels(
    paths: list[str], labels: str | None, cfg: TileConfig
) -> tuple[list[str], dict[str, str | VectorLabels]]:
    """Scenes left after taking label files out, and each scene's label source."""
    if labels is None:
        if cfg.labels_map:
            return paths, {p: cfg.labels_map[stem(p)] for p in paths if stem(p) in cfg.labels_map}
        return paths, {}
    if is_vector(labels):
        vec = VectorLabels.load(
            labels,
            cfg.label_attr,
            cfg.classes,
            crs_override=cfg.label_crs,
            buffer_m=cfg.label_buffer,
        )
        return paths, {p: vec for p in paths}
    files = expand_inputs([labels])
    fs, p = segfs.filesystem(labels)
    if not fs.isdir(p):  # one label raster
        scenes = [s for s in paths if s not in files]
        if len(scenes) != 1:
            raise InputError(
                f"--labels {labels} is one raster but {len(scenes)} scenes were given; pass a"
                " folder of label rasters (matched by name) or one scene"
            )
        return scenes, {scenes[0]: files[0]}
    scenes, matched = match_labels(paths, files, cfg.labels_map)
    return scenes, dict(matched)


Prepared = tuple[str, SceneInfo, SceneLabels | None]


def check_inputs(
    paths: list[str],
    label_of: dict[str, str | VectorLabels],
    cfg: TileConfig,
    reporter: Reporter,
) -> list[Prepared]:
    """Read every scene header (and pair its labels) before anything is written."""
    prepared: list[Prepared] = []
    for p in paths:
        with open_raster(p) as ds:
            info = scene_info(ds, p, cfg.bands, cfg.pixel_space)
        lab = SceneLabels(info, label_of[p], reporter) if p in label_of else None
        prepared.append((stem(p), info, lab))
    n_bands = {len(info.bands) for _, info, _ in prepared}
    if len(n_bands) > 1:
        raise InputError(
            f"scenes have different band counts {sorted(n_bands)}; choose the same bands for all"
            " with --bands (a store holds one channel count)"
        )
    return prepared


def check_classes(labels: np.ndarray, classes: list[str], lab: SceneLabels | None) -> None:
    """A class id the store has no name for would crash training later: refuse it now."""
    top = int(labels[labels != IGNORE].max(initial=0))
    if top >= len(classes):
        source = lab.describe() if lab is not None else "the labels"
        raise InputError(
            f"{source} holds class id {top} but the store has {len(classes)} classes {classes};"
            f" name every class (e.g. --set 'classes=[{', '.join([*classes, '...'])}]') or fix"
            " the labels"
        )
