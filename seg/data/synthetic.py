"""`seg sample`: a small synthetic but learnable labelled data set, for the quickstart and tests.

Each scene is an RGB uint8 GeoTIFF in UTM zone 36N (EPSG:32636, 0.5 m pixels) with bright, reddish
rectangular "buildings" on a textured green-grey background, a no-data corner (nodata 0), a
sidecar metadata JSON, and its label twice: a class-index mask GeoTIFF and the same buildings as
GeoJSON polygons in longitude/latitude (RFC 7946). Deterministic for a given seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from seg import fs as segfs

CRS = "EPSG:32636"
PIXEL = 0.5


@dataclass
class SampleSet:
    scenes: list[str]
    masks: list[str]
    geojson: str


def _scene(
    height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """image (3, H, W) uint8, mask (H, W) {0, 1}, boxes (row, col, h, w)."""
    mask = np.zeros((height, width), np.uint8)
    boxes = []
    for _ in range(height * width // 6000):
        h, w = (int(x) for x in rng.integers(10, 40, size=2))
        r, c = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        mask[r : r + h, c : c + w] = 1
        boxes.append((r, c, h, w))
    # Smooth texture (box-blurred noise) so the background is not trivially flat.
    noise = rng.normal(0, 1, size=(height // 8 + 1, width // 8 + 1))
    texture = np.kron(noise, np.ones((8, 8)))[:height, :width]
    base = np.array([90.0, 110.0, 80.0])[:, None, None] + 15 * texture[None]
    roof = np.array([95.0, 40.0, 30.0])[:, None, None] * mask[None]
    image = base + roof + rng.normal(0, 12, size=(3, height, width))
    image = np.clip(image, 1, 255).astype(np.uint8)  # 0 is reserved for nodata
    return image, mask, boxes


def write_sample(out_dir: str, scenes: int = 3, size: int = 512, seed: int = 0) -> SampleSet:
    """Write `scenes` labelled scenes of about `size` x `size` pixels into `out_dir`."""
    rng = np.random.default_rng(seed)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    features = []
    out = SampleSet([], [], segfs.join(out_dir, "buildings.geojson"))
    for i in range(scenes):
        height, width = size + 16 * i, size - 8 * i  # odd shapes exercise the shifted last window
        image, mask, boxes = _scene(height, width, rng)
        corner = np.add.outer(np.arange(height), np.arange(width)) < size // 6  # no-data corner
        image[:, corner] = 0
        x0, y0 = 450000.0 + 2000.0 * i, 35000.0
        transform = from_origin(x0, y0, PIXEL, PIXEL)
        name = f"sample_{i}"
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "crs": CRS,
            "transform": transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        scene = segfs.join(out_dir, f"{name}_image.tif")
        with (
            segfs.local_copy_for_write(scene, ".tif") as tmp,
            rasterio.open(tmp, "w", count=3, dtype="uint8", nodata=0, **profile) as dst,
        ):
            dst.write(image)
            dst.update_tags(SENSOR="seg-sample", ACQUISITION=f"2026-01-{i + 1:02d}")
        mask_path = segfs.join(out_dir, f"{name}_mask.tif")
        with (
            segfs.local_copy_for_write(mask_path, ".tif") as tmp,
            rasterio.open(tmp, "w", count=1, dtype="uint8", **profile) as dst,
        ):
            dst.write(mask[None])
        meta = {
            "sensor": "seg-sample",
            "gsd_m": PIXEL,
            "off_nadir_deg": 5.0 + i,
            "sun_elevation_deg": 60.0,
        }
        segfs.write_bytes_atomic(
            segfs.join(out_dir, f"{name}_image.json"), json.dumps(meta).encode()
        )
        for r, c, h, w in boxes:
            xa, ya = transform @ (c, r)
            xb, yb = transform @ (c + w, r + h)
            lon, lat = to_lonlat.transform([xa, xb, xb, xa, xa], [ya, ya, yb, yb, ya])
            poly = shapely.Polygon(zip(lon, lat, strict=True))
            features.append(
                {
                    "type": "Feature",
                    "properties": {"class": "building", "scene": name},
                    "geometry": shapely.geometry.mapping(poly),
                }
            )
        out.scenes.append(scene)
        out.masks.append(mask_path)
    doc = {"type": "FeatureCollection", "features": features}
    segfs.write_bytes_atomic(out.geojson, json.dumps(doc).encode())
    return out


def write_seasons(
    out_dir: str, scenes: int = 8, size: int = 128, *, seed: int = 0, sidecar: bool = True
) -> list[tuple[str, str, bool]]:
    """A set whose labels depend on metadata: every scene has the same kind of bright, speckled
    fields on a textured background, but only in summer scenes (June) are they class 1 ("crop");
    in winter scenes (December) they are background. Pixels alone cannot tell the two; the
    acquisition time in the sidecar (or, with `sidecar=False`, nowhere) can.

    Scenes alternate summer, winter, ...; returns (scene, mask, is_summer) per scene."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(scenes):
        summer = i % 2 == 0
        fields = np.zeros((size, size), bool)
        for _ in range(max(2, size * size // 2500)):
            h, w = (int(x) for x in rng.integers(size // 8, size // 3, size=2))
            r, c = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
            fields[r : r + h, c : c + w] = True
        noise = rng.normal(0, 1, size=(size // 8 + 1, size // 8 + 1))
        texture = np.kron(noise, np.ones((8, 8)))[:size, :size]
        image = np.array([90.0, 110.0, 80.0])[:, None, None] + 12 * texture[None]
        image = image + np.array([60.0, 50.0, 20.0])[:, None, None] * fields[None]
        image = np.clip(image + rng.normal(0, 10, size=(3, size, size)), 1, 255).astype(np.uint8)
        mask = (fields & summer).astype(np.uint8)
        name = f"season_{i}"
        profile = {
            "driver": "GTiff", "width": size, "height": size, "crs": CRS,
            "transform": from_origin(450000.0 + 1000.0 * i, 35000.0, PIXEL, PIXEL),
        }  # fmt: skip
        scene = segfs.join(out_dir, f"{name}.tif")
        with (
            segfs.local_copy_for_write(scene, ".tif") as tmp,
            rasterio.open(tmp, "w", count=3, dtype="uint8", **profile) as dst,
        ):
            dst.write(image)
        mask_path = segfs.join(out_dir, "masks", f"{name}.tif")
        with (
            segfs.local_copy_for_write(mask_path, ".tif") as tmp,
            rasterio.open(tmp, "w", count=1, dtype="uint8", **profile) as dst,
        ):
            dst.write(mask[None])
        if sidecar:
            day = 10 + i % 15
            when = f"2021-06-{day:02d}T10:30:00Z" if summer else f"2021-12-{day:02d}T10:30:00Z"
            segfs.write_bytes_atomic(
                segfs.join(out_dir, f"{name}.json"), json.dumps({"datetime": when}).encode()
            )
        out.append((scene, mask_path, summer))
    return out
