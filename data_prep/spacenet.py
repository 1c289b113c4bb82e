"""SpaceNet GeoJSON -> class-attributed GeoJSON, and optionally a mask GeoTIFF on a scene's grid.

SpaceNet label files carry a `crs` member (often a UTM zone or CRS84), many OSM-style
attributes, sometimes empty geometries, and road centre lines rather than road areas. We keep
non-empty geometries, add `class_id` (one class, or an integer attribute such as `road_type`),
optionally buffer lines/points by metres into areas, and can rasterize onto a scene's grid with
the same code `seg tile` uses, so the mask and `seg tile --labels GEOJSON` agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from seg import fs as segfs
from seg.errors import InputError


@dataclass
class Converted:
    geojson: str
    features: int
    dropped: int
    mask: str | None


def _class_id(props: dict[str, Any], attr: str | None, value: int, path: str) -> int:
    if attr is None:
        return value
    raw = props.get(attr)
    try:
        out = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: attribute {attr}={raw!r} is not an integer class id") from exc
    if not 0 <= out < 255:
        raise InputError(f"{path}: class id {out} is outside 0..254")
    return out


def convert(
    src: str,
    out: str,
    attr: str | None = None,
    class_id: int = 1,
    mask_for: str | None = None,
    buffer_m: float = 0.0,
) -> Converted:
    """Write a GeoJSON with `class_id` at `out`; with `mask_for`, also `<out stem>_mask.tif`."""
    try:
        doc = json.loads(segfs.read_bytes(src))
    except FileNotFoundError as exc:
        raise InputError(f"{src} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{src} is not GeoJSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InputError(f"{src} is not a GeoJSON FeatureCollection")
    kept, dropped = [], 0
    for f in doc.get("features") or []:
        geom = f.get("geometry")
        if not geom or shapely.geometry.shape(geom).is_empty:
            dropped += 1
            continue
        props = dict(f.get("properties") or {})
        props["class_id"] = _class_id(props, attr, class_id, src)
        kept.append({"type": "Feature", "properties": props, "geometry": geom})
    result: dict[str, Any] = {"type": "FeatureCollection", "features": kept}
    if "crs" in doc:
        result["crs"] = doc["crs"]
    segfs.write_bytes_atomic(out, json.dumps(result).encode())
    mask = None
    if mask_for:
        mask = out.rsplit(".", 1)[0] + "_mask.tif"
        rasterize_on(out, mask_for, mask, buffer_m)
    return Converted(out, len(kept), dropped, mask)


def rasterize_on(vector: str, scene: str, out: str, buffer_m: float = 0.0) -> None:
    """Class ids of `vector` (attribute `class_id`) on `scene`'s grid, as a uint8 COG at `out`."""
    from rasterio.windows import Window

    from seg.geo.cog import cog_writer, output_profile
    from seg.geo.labels import SceneLabels
    from seg.geo.raster import open_raster, scene_info
    from seg.geo.vectors import VectorLabels

    with open_raster(scene) as ds:
        info = scene_info(ds, scene)
    labels = SceneLabels(info, VectorLabels.load(vector, "class_id", [], buffer_m=buffer_m))
    with cog_writer(out, output_profile(info, 1, "uint8")) as dst:
        for r in range(0, info.height, 512):
            h = min(512, info.height - r)
            strip = labels.strip(r, h)  # (h, W)
            dst.write(np.asarray(strip)[None], window=Window(0, r, info.width, h))
