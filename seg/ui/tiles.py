"""Web-map (XYZ, Web Mercator) tiles of a predicted scene, cut from its GeoTIFFs by rio-tiler:
the scene (first three bands, 2-98 % stretched), the class mask (class colours, no data
transparent) and one class's probability (a ramp whose opacity is the probability).

`seg predict` writes SCENE_mask.tif and, with --probabilities, SCENE_mask_probs.tif beside it; its
SEG_SOURCE tag names the scene. The scene is only served when it lies inside a folder seg ui
was given: a tag is not a licence to read any file on the machine.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from seg import fs as segfs
from seg.classes import NODATA, colour
from seg.errors import InputError
from seg.geo.raster import open_raster

TILE = 256
LAYERS = ("scene", "mask", "probability")


@dataclass(frozen=True)
class MapSource:
    """What the map page of one mask shows."""

    mask: str
    classes: list[str]
    bounds: tuple[float, float, float, float]  # west, south, east, north in degrees
    minzoom: int
    maxzoom: int
    scene: str | None  # served only when inside a root
    scene_note: str  # why there is no scene layer, or ""
    probabilities: str | None
    report: dict[str, Any] | None  # SCENE_mask_eval/report.json of `seg eval`, when there


def probabilities_path(mask: str) -> str:
    """Where `seg predict --probabilities` put the mask's class probabilities."""
    return mask.rsplit(".", 1)[0] + "_probs.tif"


def map_source(mask: str, allowed: Callable[[str], bool]) -> MapSource:
    """Read a mask's header, tags and neighbours; `allowed(path)` says whether the scene its
    SEG_SOURCE tag names may be served."""
    from rio_tiler.io import Reader

    with open_raster(mask) as ds:
        if ds.crs is None:
            raise InputError(f"{mask} has no georeference: there is nothing to place on a map")
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            raise InputError(f"{mask} is not a class mask (1 band of uint8 class ids)")
        tags = ds.tags()
        with Reader(None, dataset=ds) as reader:
            west, south, east, north = reader.get_geographic_bounds("epsg:4326")
            zooms = (int(reader.minzoom), int(reader.maxzoom))
    classes = json.loads(tags["SEG_CLASSES"]) if "SEG_CLASSES" in tags else []
    scene = tags.get("SEG_SOURCE") or None
    note = _scene_note(scene, allowed)
    served = scene if scene and not note else None
    probs = probabilities_path(mask)
    report_path = segfs.join(mask.removesuffix(".tif") + "_eval", "report.json")
    report = None
    if segfs.exists(report_path):
        try:
            report = json.loads(segfs.read_bytes(report_path))
        except (ValueError, OSError):
            note = (note + "; " if note else "") + f"{report_path} is not readable JSON"
    return MapSource(
        mask, classes, (west, south, east, north), *zooms,
        scene=served,
        scene_note=note, probabilities=probs if segfs.exists(probs) else None, report=report,
    )  # fmt: skip


def _scene_note(scene: str | None, allowed: Callable[[str], bool]) -> str:
    """Why the scene a mask names cannot be served, or "" when it can."""
    if not scene:
        return "the mask does not name its scene (no SEG_SOURCE tag)"
    if not allowed(scene):
        return f"{scene} is outside the folders seg ui serves (give its folder with --scenes)"
    if not segfs.exists(scene):
        return f"{scene} does not exist any more"
    return ""


def layer_path(mask: str, layer: str, allowed: Callable[[str], bool]) -> str | None:
    """The file a layer's tiles are cut from (None: the mask has no such layer to serve): what
    a tile request needs, without the bounds, zooms and report of `map_source`."""
    if layer not in LAYERS:
        raise InputError(f"no map layer {layer!r}: choose one of {list(LAYERS)}")
    if layer == "mask":
        return mask
    if layer == "probability":
        probs = probabilities_path(mask)
        return probs if segfs.exists(probs) else None
    with open_raster(mask) as ds:
        scene = ds.tags().get("SEG_SOURCE") or None
    return scene if scene and not _scene_note(scene, allowed) else None


def tile_png(path: str, layer: str, tile: tuple[int, int, int], *, band: int = 1) -> bytes | None:
    """One 256 px PNG of `layer` at tile (z, x, y) from `path`; None where the tile lies
    outside the raster."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    if layer not in LAYERS:
        raise InputError(f"no map layer {layer!r}: choose one of {list(LAYERS)}")
    with open_raster(path) as ds, Reader(None, dataset=ds) as reader:
        if layer == "probability" and not 1 <= band <= ds.count:
            raise InputError(f"{path} has {ds.count} class bands, not band {band}")
        indexes = _display_bands(ds.count) if layer == "scene" else (band,)
        try:
            # nearest: class ids must not be blended into ids of other classes
            z, x, y = tile
            img = reader.tile(x, y, z, tilesize=TILE, indexes=indexes, resampling_method="nearest")
        except TileOutsideBounds:
            return None
        data = img.array.data  # (bands, 256, 256)
        valid = np.logical_not(np.ma.getmaskarray(img.array).any(axis=0))  # (256, 256)
        if layer == "scene":
            lo, hi = _stretch(path, indexes)
            rgb = np.clip((data.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
            rgba = np.dstack([*(rgb * 255).astype(np.uint8), valid.astype(np.uint8) * 255])
        elif layer == "mask":
            rgba = _mask_rgba(data[0], valid)
        else:
            rgba = _probability_rgba(data[0], valid, scale=ds.scales[band - 1], dtype=ds.dtypes[0])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _display_bands(count: int) -> tuple[int, ...]:
    return (1, 2, 3) if count >= 3 else (1, 1, 1)


@functools.lru_cache(maxsize=32)
def _stretch(path: str, indexes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """2nd and 98th percentile per shown band, (3, 1, 1) each, from a 512 px overview: the
    same stretch on every tile, so tiles meet without steps in brightness."""
    with open_raster(path) as ds:
        step = max(1, max(ds.width, ds.height) // 512)
        small = ds.read(list(indexes), out_shape=(3, ds.height // step or 1, ds.width // step or 1),
                        masked=True)  # fmt: skip
    lo, hi = [], []
    for b in small:
        v = b.compressed() if np.ma.isMaskedArray(b) else np.asarray(b).ravel()
        lo.append(np.percentile(v, 2) if v.size else 0.0)
        hi.append(np.percentile(v, 98) if v.size else 1.0)
    return (np.array(lo, np.float32).reshape(3, 1, 1), np.array(hi, np.float32).reshape(3, 1, 1))


def _mask_rgba(ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lut = np.array([(*colour(i), 255) for i in range(256)], np.uint8)  # (256, 4)
    lut[NODATA] = (0, 0, 0, 0)
    rgba = lut[ids.astype(np.uint8)]  # (256, 256, 4)
    rgba[~valid] = 0
    return rgba


def _probability_rgba(p: np.ndarray, valid: np.ndarray, *, scale: float, dtype: str) -> np.ndarray:
    """Probability -> yellow-to-red, opacity = probability (0 shows the scene underneath)."""
    if dtype == "uint8":
        valid = valid & (p != NODATA)
        prob = p.astype(np.float32) * (scale if scale != 1.0 else 1 / 254)
    else:
        prob = np.nan_to_num(p.astype(np.float32))
    prob = np.clip(prob, 0, 1)
    rgba = np.zeros((*p.shape, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = ((1 - prob) * 220).astype(np.uint8)
    rgba[..., 3] = np.where(valid, prob * 230, 0).astype(np.uint8)
    return rgba
