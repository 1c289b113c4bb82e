"""`seg eval --checkpoint CKPT --store STORE --split test`: predict a split's whole scenes and
score them in one command.

The store knows each scene's source file and its label raster (`SceneAttrs`); the scenes are
predicted with `seg predict`'s own code into OUT/masks (finished masks of this checkpoint are
skipped, so a re-run only scores), then scored together (`seg.evaluation.pooled`).
"""

from __future__ import annotations

from seg import fs as segfs
from seg.data.store import WindowStore
from seg.errors import InputError
from seg.evaluation.pooled import Pair, PooledReport, evaluate_many
from seg.geo.labels import is_vector, stem
from seg.inference.options import PredictOptions
from seg.inference.scenes import predict_scenes
from seg.report import SILENT, Reporter


def split_pairs(store_path: str, split: str) -> list[tuple[str, str]]:
    """(scene file, label raster) of every finished scene of `split`."""
    store = WindowStore.open(store_path)
    ids = store.scene_ids(split)
    if not ids:
        retile = ", or re-tile with --set splits.test=0.1 to hold test scenes out (seg tile keeps"
        hint = retile + " none by default)" if split == "test" else ""
        raise InputError(
            f"split {split!r} of {store_path} has no finished scenes (splits: "
            f"{sorted(set(store.splits.values()))}); choose another --split{hint}"
        )
    pairs = []
    for sid in ids:
        attrs = store.scene(sid).attrs
        if attrs.window_splits:
            raise InputError(
                f"scene {sid!r} of {store_path} is split inside itself (splits.blocks): its"
                f" {split} windows are not a whole scene; score whole held-out scenes"
            )
        if not attrs.labels:
            raise InputError(f"scene {sid!r} of {store_path} was tiled without labels")
        if is_vector(attrs.labels):
            raise InputError(
                f"scene {sid!r} of {store_path} has vector labels ({attrs.labels}): score"
                " against label rasters (data_prep or gdal_rasterize), as `seg eval MASKS TRUTH`"
            )
        for path in (attrs.source, attrs.labels):
            if not segfs.exists(path):
                raise InputError(
                    f"{path} (scene {sid!r} of {store_path}) no longer exists; run seg eval"
                    " where the store's scenes are, or predict them and use seg eval MASKS TRUTH"
                )
        pairs.append((attrs.source, attrs.labels))
    return pairs


def score_split(
    checkpoint: str,
    store: str,
    split: str,
    *,
    out: str,
    options: PredictOptions | None = None,
    border: int = 8,
    reporter: Reporter = SILENT,
) -> PooledReport:
    """Predict every scene of `split` into OUT/masks, then score them all into OUT."""
    pairs = split_pairs(store, split)
    masks = segfs.join(out, "masks")
    predict_scenes(
        [scene for scene, _ in pairs],
        checkpoint=checkpoint,
        out=masks,
        options=options,
        reporter=reporter,
    )
    scored = [
        Pair(stem(scene), segfs.join(masks, stem(scene) + "_mask.tif"), labels, scene)
        for scene, labels in pairs
    ]
    return evaluate_many(scored, out=out, border=border, reporter=reporter)
