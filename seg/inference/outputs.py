"""The files one scene's prediction becomes, written from stitched strips of rows.

`SceneOutputs.open()` yields the sink that `seg.inference.stitch.Stitcher` hands finished rows
to. Rows are buffered to whole 512-row tile rows and written to temporary tiled GeoTIFFs
(memory ~ width); on success each becomes a COG with overviews at its final path (local or
gs://), the class mask last, so an existing mask means the scene is completely done. On error
nothing is left behind.

- mask: uint8 class ids, 255 = no data (input had no data, or no window covered the pixel);
- probabilities (optional): one band per class, uint8 scaled by 254 (255 = no data) or float16;
- polygons (optional): one polygon per connected region of a class, GeoJSON or GeoPackage.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg import fs as segfs
from seg.checkpoint import CheckpointInfo
from seg.classes import NODATA, colour
from seg.errors import ConfigError, InputError, ResourceError
from seg.geo.cog import cog_writer, output_profile
from seg.geo.labels import stem
from seg.geo.polygons import Polygonizer, write_vector
from seg.geo.raster import SceneInfo
from seg.inference.stitch import Sink
from seg.provenance import code_provenance

MASK_SUFFIX = "_mask.tif"
VECTOR_FORMATS = ("geojson", "gpkg")
BLOCK = 512  # rows per tile row of the output GeoTIFFs (cog.output_profile's block size)
PROB_TYPES = ("uint8", "float16")


@dataclass
class OutputPaths:
    mask: str
    probabilities: str | None = None
    vector: str | None = None


class SceneOutputs:
    """Writers for one scene's outputs on exactly the scene's grid."""

    def __init__(
        self,
        info: SceneInfo,
        paths: OutputPaths,
        class_names: list[str],
        *,
        probabilities: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        if len(class_names) >= NODATA:
            raise ConfigError(f"{len(class_names)} classes do not fit uint8 ids with 255 = nodata")
        if probabilities is not None and probabilities not in PROB_TYPES:
            raise ConfigError(f"--probabilities must be one of {list(PROB_TYPES)}")
        if probabilities is not None and paths.probabilities is None:
            raise ConfigError("a probabilities path is needed to write probabilities")
        self.info = info
        self.paths = paths
        self.class_names = class_names
        self.prob_type = probabilities
        self.tags = {
            "SEG_CLASSES": json.dumps(class_names),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (tags or {}).items()},
        }
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._pending_rows = 0
        self._next_row = 0

    @contextlib.contextmanager
    def open(self) -> Iterator[Sink]:
        """Yield the sink; commit all files when the block ends without error."""
        info = self.info
        k = len(self.class_names)
        body_error: BaseException | None = None
        try:
            with contextlib.ExitStack() as stack:
                # Entered first, committed last: the mask's presence marks the scene done.
                mask = stack.enter_context(
                    cog_writer(self.paths.mask, output_profile(info, 1, "uint8", nodata=NODATA))
                )
                mask.update_tags(**self.tags)
                mask.set_band_description(1, "class")
                mask.write_colormap(
                    1,
                    {i: (*colour(i), 255) for i in range(k)} | {NODATA: (0, 0, 0, 0)},
                )
                probs = None
                if self.prob_type is not None and self.paths.probabilities is not None:
                    if self.prob_type == "uint8":
                        profile = output_profile(info, k, "uint8", nodata=NODATA)
                    else:  # half floats in a Float32 GeoTIFF (GDAL's NBITS=16), NaN = no data
                        profile = output_profile(
                            info, k, "float32", nodata=float("nan"), NBITS=16, predictor=3
                        )
                    probs = stack.enter_context(cog_writer(self.paths.probabilities, profile))
                    probs.update_tags(**self.tags)
                    for i, name in enumerate(self.class_names):
                        probs.set_band_description(i + 1, name)
                    if self.prob_type == "uint8":
                        probs.scales = (1.0 / 254,) * k
                poly = (
                    Polygonizer(info.height, info.affine, self.class_names)
                    if self.paths.vector
                    else None
                )

                def write(rows: int) -> None:
                    classes = np.concatenate([c for c, _ in self._pending], axis=0)[:rows]
                    window = ((self._next_row, self._next_row + rows), (0, info.width))
                    mask.write(classes[None], window=window)
                    if probs is not None:
                        p = np.concatenate([q for _, q in self._pending], axis=1)[:, :rows]
                        probs.write(p, window=window)
                    if poly is not None:
                        poly.add(self._next_row, classes)
                    self._drop(rows)

                def sink(row: int, p: np.ndarray, valid: np.ndarray) -> None:
                    assert row == self._next_row + self._pending_rows, "rows out of order"
                    classes = np.argmax(p, axis=0).astype(np.uint8)  # (n, W)
                    classes[~valid] = NODATA
                    self._pending.append((classes, self._encode(p, valid)))
                    self._pending_rows += p.shape[1]
                    while self._pending_rows >= BLOCK:
                        write(BLOCK)
                    if self._next_row + self._pending_rows == info.height and self._pending_rows:
                        write(self._pending_rows)

                try:
                    yield sink
                except BaseException as exc:
                    body_error = exc  # not a write failure: let it through unchanged
                    raise
                if self._next_row != info.height:
                    raise RuntimeError(f"only {self._next_row} of {info.height} rows were written")
                if poly is not None and self.paths.vector:
                    write_vector(self.paths.vector, poly.features(), info.crs_wkt)
        except OSError as exc:
            if exc is body_error:
                raise
            raise ResourceError(
                f"cannot write the outputs for {info.path} ({self.paths.mask}): {exc}; choose a"
                " writable --out"
            ) from exc

    def _encode(self, p: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
        """(K, n, W) float32 probabilities -> the probability raster's dtype, no data marked."""
        if self.prob_type is None:
            return None
        if self.prob_type == "uint8":
            q = np.rint(p * 254.0).astype(np.uint8)
            q[:, ~valid] = NODATA
            return q
        out = p.astype(np.float32)
        out[:, ~valid] = np.nan
        return out

    def _drop(self, rows: int) -> None:
        """Forget the first `rows` pending rows (they are written)."""
        kept: list[tuple[np.ndarray, np.ndarray | None]] = []
        skip = rows
        for c, q in self._pending:
            n = c.shape[0]
            if skip >= n:
                skip -= n
                continue
            kept.append((c[skip:], None if q is None else q[:, skip:]))
            skip = 0
        self._pending = kept
        self._pending_rows -= rows
        self._next_row += rows


def output_paths(
    scenes: list[str], out: str, probabilities: bool, vector: str | None
) -> dict[str, OutputPaths]:
    """--out is a .tif file for one scene, else a folder of `<stem>_mask.tif` files."""
    single = out.lower().endswith((".tif", ".tiff"))
    if single and len(scenes) != 1:
        raise ConfigError(
            f"--out {out} is a file but {len(scenes)} scenes were given; pass a folder as --out"
        )
    if vector and vector.lower() not in VECTOR_FORMATS and len(scenes) != 1:
        raise ConfigError(
            f"--vector {vector} is one file but {len(scenes)} scenes were given; pass --vector"
            " geojson or --vector gpkg to write one file next to each mask"
        )
    ids = [stem(s) for s in scenes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes and not single:
        raise InputError(f"scene file names must be unique for one --out folder: {dupes[:5]}")
    paths = {}
    # Real paths: a symlinked input must not be overwritten by its own (or another's) mask.
    inputs = {os.path.realpath(s): s for s in scenes if not segfs.is_remote(s)}
    for scene, sid in zip(scenes, ids, strict=True):
        mask = out if single else segfs.join(out, sid + MASK_SUFFIX)
        base = mask.rsplit(".", 1)[0]
        vec = None
        if vector:
            vec = f"{base}.{vector.lower()}" if vector.lower() in VECTOR_FORMATS else vector
        made = OutputPaths(mask, base + "_probs.tif" if probabilities else None, vec)
        for p in (made.mask, made.probabilities, made.vector):
            if p and not segfs.is_remote(p) and os.path.realpath(p) in inputs:
                hit = inputs[os.path.realpath(p)]
                raise ConfigError(f"--out {out} would overwrite the input scene {hit}")
        paths[scene] = made
    return paths


def check_existing(paths: dict[str, OutputPaths]) -> None:
    """Refuse to treat as finished, or to overwrite, a file at a mask path that `seg predict`
    did not write (a label raster named `<scene>_mask.tif` beside its scene, say)."""
    from seg.geo.raster import open_raster

    for scene, out in paths.items():
        if not segfs.exists(out.mask):
            continue
        try:
            with open_raster(out.mask) as ds:
                ours = "SEG_CLASSES" in ds.tags()
        except InputError:
            ours = False
        if not ours:
            raise InputError(
                f"{out.mask} exists and was not written by seg predict (a label raster?);"
                f" seg will not skip or overwrite it: choose another --out for {scene}"
            )


def finished(mask: str, scene: str, checkpoint: str) -> bool:
    """Whether the seg mask at `mask` is this scene's, predicted by this checkpoint: only then
    is the scene done. A seg mask of another scene or checkpoint is refused (it would be
    mistaken for this run's result), unless --overwrite replaces it."""
    from seg.geo.raster import open_raster

    with open_raster(mask) as ds:
        tags = ds.tags()
    made_from = (tags.get("SEG_SOURCE", ""), tags.get("SEG_CHECKPOINT", ""))
    if tuple(map(_same_path, made_from)) == (_same_path(scene), _same_path(checkpoint)):
        return True
    raise InputError(
        f"{mask} holds a mask of {made_from[0] or 'another scene'} by checkpoint"
        f" {made_from[1] or '?'}, not of {scene} by {checkpoint}; pass --overwrite to replace"
        " it, or choose another --out"
    )


def _same_path(path: str) -> str:
    return path if segfs.is_remote(path) else os.path.realpath(path.removeprefix("file://"))


def mask_provenance(info: CheckpointInfo) -> dict[str, Any]:
    """What made a mask: the code that predicts it, and what made its model (the store's
    fingerprint without its scene list, which can be long)."""
    made = dict(info.provenance)
    store = made.get("store")
    if isinstance(store, dict):
        made["store"] = {k: v for k, v in store.items() if k != "scenes"}
    return {"predicted_with": code_provenance(), "model": made}
