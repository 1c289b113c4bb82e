"""Web-map tile chips (z/x/y, XYZ/Google scheme) -> one georeferenced EPSG:3857 GeoTIFF.

Chips are found by a name pattern with {z}, {x} and {y} ("{z}/{x}/{y}.png" by default;
"OAM-{x}-{y}-{z}.png" for fAIr/RAMP chips). The mosaic covers the chips' bounding box at one
zoom; missing chips are no-data (an internal mask). Written strip by strip, so memory stays at
one row of chips.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from rich.console import Console
from rich.progress import Progress

from seg import fs as segfs
from seg.errors import InputError
from seg.geo.raster import open_raster

HALF = 20037508.342789244  # half the EPSG:3857 world width in metres


@dataclass
class Mosaic:
    out: str
    zoom: int
    chips: int
    width: int
    height: int


def tile_transform(z: int, x0: int, y0: int, chip: int) -> Affine:
    """The affine of a mosaic whose top-left chip is (x0, y0) at zoom z, `chip` pixels a side."""
    size = 2 * HALF / 2**z  # metres per chip
    return Affine(size / chip, 0.0, -HALF + x0 * size, 0.0, -size / chip, HALF - y0 * size)


def find_chips(folder: str, pattern: str) -> dict[tuple[int, int, int], str]:
    """(z, x, y) -> path for every file under `folder` whose relative name fits `pattern`."""
    regex = re.escape(pattern)
    for key in ("z", "x", "y"):
        regex = regex.replace(re.escape("{" + key + "}"), f"(?P<{key}>\\d+)")
    rx = re.compile(regex + "$")
    fs, root = segfs.filesystem(folder)
    proto = folder.split("://", 1)[0] + "://" if segfs.is_remote(folder) else ""
    out = {}
    for path in fs.find(root):
        rel = os.path.relpath(path, root) if not proto else path[len(root) :].lstrip("/")
        m = rx.search(rel)
        if m:
            out[(int(m["z"]), int(m["x"]), int(m["y"]))] = proto + path
    return out


def mosaic(
    folder: str, out: str, pattern: str = "{z}/{x}/{y}.png", zoom: int | None = None
) -> Mosaic:
    chips = find_chips(folder, pattern)
    if not chips:
        raise InputError(f"no chips named like {pattern!r} under {folder}")
    zooms = sorted({z for z, _, _ in chips})
    if zoom is None:
        if len(zooms) > 1:
            raise InputError(f"chips at several zooms {zooms}; choose one with --zoom")
        zoom = zooms[0]
    at_zoom = {(x, y): p for (z, x, y), p in chips.items() if z == zoom}
    if not at_zoom:
        raise InputError(f"no chips at zoom {zoom} (found zooms {zooms})")
    xs = sorted({x for x, _ in at_zoom})
    ys = sorted({y for _, y in at_zoom})
    first = next(iter(at_zoom.values()))
    with open_raster(first) as ds:
        chip, count, dtype = ds.width, min(ds.count, 3), ds.dtypes[0]  # RGBA: alpha -> mask
    x0, y0 = xs[0], ys[0]
    nx, ny = xs[-1] - x0 + 1, ys[-1] - y0 + 1
    profile = {
        "driver": "GTiff",
        "width": nx * chip,
        "height": ny * chip,
        "count": count,
        "dtype": dtype,
        "crs": "EPSG:3857",
        "transform": tile_transform(zoom, x0, y0, chip),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with (
        segfs.local_copy_for_write(out, ".tif") as tmp,
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(tmp, "w", **profile) as dst,
        Progress(console=Console(stderr=True), transient=True) as bar,
    ):
        task = bar.add_task("chips", total=nx * ny)
        for j in range(ny):
            for i in range(nx):
                bar.advance(task)
                win = Window(i * chip, j * chip, chip, chip)
                path = at_zoom.get((x0 + i, y0 + j))
                if path is None:
                    dst.write_mask(np.zeros((chip, chip), np.uint8), window=win)
                    continue
                with open_raster(path) as src:
                    if (src.width, src.height) != (chip, chip):
                        raise InputError(
                            f"chip {path} is {src.width}x{src.height}, not {chip}x{chip}"
                        )
                    data = src.read(list(range(1, count + 1)))  # (count, chip, chip)
                    valid = src.dataset_mask()  # alpha of RGBA chips becomes the mask
                dst.write(data, window=win)
                dst.write_mask(valid, window=win)
    # The sidecar `seg tile` keeps (model.metadata reads gsd): Web Mercator's metres are
    # stretched by 1 / cos(latitude), so the ground sample distance is the nominal one x cos.
    _, north = tile_transform(zoom, x0, y0, chip) @ (nx * chip / 2, ny * chip / 2)
    lat = math.degrees(2 * math.atan(math.exp(north / (HALF / math.pi))) - math.pi / 2)
    nominal = 2 * HALF / 2**zoom / chip
    sidecar = {"zoom": zoom, "gsd": nominal * math.cos(math.radians(lat)), "source": "web tiles"}
    stem = out[: -len(os.path.splitext(out)[1])] if os.path.splitext(out)[1] else out
    segfs.write_bytes_atomic(stem + ".json", json.dumps(sidecar, indent=1).encode())
    return Mosaic(out, zoom, len(at_zoom), nx * chip, ny * chip)
