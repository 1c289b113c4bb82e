"""All rasterio I/O in one place: open and check scenes, read strips of windows with their valid
mask, output profiles, and a COG writer.

Paths may be local or gs://; remote files are streamed through fsspec (rasterio's `opener`), so a
scene is read by blocks, never downloaded whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A .vrt scene may carry an inline Python pixel function; GDAL runs it when this is YES. Scenes
# are data, never code: pinned off before rasterio (and GDAL) are loaded, whatever the caller set.
os.environ["GDAL_VRT_ENABLE_PYTHON"] = "NO"

import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import DatasetReader

from seg import fs as segfs
from seg.errors import InputError
from seg.geo.grid import Window

GEO_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
# Plain pictures (no georeference: tile them with --pixel-space). Many public aerial sets ship
# as PNG / JPEG; next to GeoTIFFs in one folder they are usually browse images, so a folder that
# holds both gives its GeoTIFFs only (name the pictures, or a glob, to take them).
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
RASTER_SUFFIXES = GEO_SUFFIXES + PICTURE_SUFFIXES


@contextlib.contextmanager
def open_raster(path: str) -> Iterator[DatasetReader]:
    """Open a local or gs:// raster for reading; a clear InputError if it is not one."""
    kwargs: dict[str, Any] = {}
    if segfs.is_remote(path):
        fs, _ = segfs.filesystem(path)
        kwargs["opener"] = fs.open
        if not segfs.exists(path):
            raise InputError(f"{path} does not exist")
    elif not os.path.exists(str(path)):
        raise InputError(f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(str(path), **kwargs)
    except RasterioIOError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is not a raster rasterio can read ({first})") from exc
    try:
        yield ds
    finally:
        ds.close()


@dataclass
class SceneInfo:
    """What tiling needs to know about a scene, read from its header only."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...]
    nodata: float | None
    bands: list[int]  # 1-based band indexes to read (alpha bands left out by default)
    band_names: list[str]
    all_valid: bool  # no nodata, alpha or mask: skip reading masks
    pixel_space: bool  # no georeference: windows are in pixel coordinates only
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])


# What GDAL raises when a file's header is fine but its pixels are not (cut, damaged).
READ_ERRORS = (RasterioError, CPLE_BaseError)


def damaged(path: str, exc: BaseException) -> InputError:
    """The one-line error for a raster whose pixels cannot be read."""
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return InputError(f"{path}: its pixels cannot be read ({reason}); the file is damaged or cut")


def _is_georeferenced(ds: DatasetReader) -> bool:
    return ds.crs is not None or ds.transform != Affine.identity()


def scene_info(
    ds: DatasetReader, path: str, bands: list[int] | None = None, pixel_space: bool = False
) -> SceneInfo:
    """Check a scene can be tiled and describe it; every refusal says how to fix it."""
    dtypes = set(ds.dtypes)
    if any(np.dtype(d).kind == "c" for d in dtypes):
        raise InputError(
            f"{path} has complex pixels ({', '.join(sorted(dtypes))}), which a segmentation model"
            " cannot take; convert it first (e.g. amplitude: gdal_calc.py --calc='abs(A)')"
        )
    if len(dtypes) > 1:
        raise InputError(f"{path} mixes band types {sorted(dtypes)}; convert it to one type first")
    georef = _is_georeferenced(ds)
    if not georef and not pixel_space:
        if ds.gcps[0]:
            raise InputError(
                f"{path} has only ground control points, no geotransform; warp it first"
                " (gdalwarp -t_srs EPSG:XXXX in.tif out.tif) or pass --pixel-space"
                " to work in pixel coordinates"
            )
        raise InputError(
            f"{path} has no georeference (no CRS, no geotransform); pass --pixel-space to work"
            " in pixel coordinates"
        )
    alpha = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]
    if bands is None:
        chosen = [b for b in range(1, ds.count + 1) if b not in alpha]
    else:
        bad = [b for b in bands if not 1 <= b <= ds.count]
        if bad:
            raise InputError(
                f"{path} has {ds.count} bands; band(s) {bad} do not exist (bands are 1-based)"
            )
        chosen = list(bands)
    flags = [ds.mask_flag_enums[b - 1] for b in chosen]
    all_valid = (
        all(f == [MaskFlags.all_valid] for f in flags) and np.dtype(ds.dtypes[0]).kind != "f"
    )
    names = [ds.descriptions[b - 1] or ds.colorinterp[b - 1].name for b in chosen]
    return SceneInfo(
        path=str(path),
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=ds.dtypes[0],
        crs_wkt=ds.crs.to_wkt() if (ds.crs is not None and georef) else None,
        transform=tuple(ds.transform)[:6] if georef else tuple(Affine.identity())[:6],
        nodata=None if ds.nodata is None else float(ds.nodata),
        bands=chosen,
        band_names=names,
        all_valid=all_valid,
        pixel_space=not georef,
        tags={str(k): str(v) for k, v in ds.tags().items()},
        metadata=sidecar_metadata(path),
    )


def sidecar_metadata(path: str) -> dict[str, Any]:
    """`<stem>.json` next to the scene (acquisition time, sensor, GSD, angles...), if present."""
    stem, _ = os.path.splitext(str(path))
    side = stem + ".json"
    try:
        if not segfs.exists(side):
            return {}
        data = json.loads(segfs.read_bytes(side))
    except json.JSONDecodeError as exc:
        raise InputError(f"sidecar metadata {side} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"sidecar metadata {side} must hold a JSON object")
    return data


def read_strip(
    ds: DatasetReader,
    info: SceneInfo,
    row_off: int,
    height: int,
    *,
    col_off: int = 0,
    width: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read full-width rows [row_off, row_off+height): image (C, h, W) and valid (h, W) bool.

    Reading a strip of windows at once (rather than each window) touches every block once per
    strip, which keeps striped and tiled GeoTIFFs near their read speed with memory ~ width.
    `col_off`/`width` read only part of the rows (one window; GDAL's block cache then serves
    the neighbours).
    """
    win = Window(row_off, col_off, height, info.width - col_off if width is None else width)
    win = win.to_rasterio()
    image = ds.read(info.bands, window=win)  # (C, h, W)
    if info.all_valid:
        valid = np.ones(image.shape[1:], bool)
    else:
        # The dataset mask combines nodata (invalid only where all bands are nodata), alpha and
        # internal masks, as GDAL defines them.
        valid = ds.dataset_mask(window=win) > 0  # (h, W)
        if image.dtype.kind == "f":
            valid &= np.isfinite(image).all(axis=0)
    return image, valid


def expand_inputs(specs: list[str], suffixes: tuple[str, ...] = RASTER_SUFFIXES) -> list[str]:
    """Files named by paths, folders (their rasters, not recursive), globs or gs:// URLs; sorted."""
    out: set[str] = set()
    for spec in specs:
        spec = str(spec).rstrip("/") if str(spec) not in ("/",) else str(spec)
        fs, p = segfs.filesystem(spec)
        remote = segfs.is_remote(spec)
        proto = spec.split("://", 1)[0] + "://" if remote else ""
        try:
            if any(ch in spec for ch in "*?["):
                found = [proto + f for f in fs.glob(p)]
                if not found:
                    raise InputError(f"{spec} matches no file")
                out.update(f for f in found if f.lower().endswith(suffixes))
            elif fs.isdir(p):
                found = [proto + f for f in fs.ls(p, detail=False)]
                files = [f for f in found if f.lower().endswith(suffixes)]
                geo = [f for f in files if f.lower().endswith(GEO_SUFFIXES)]
                files = geo or files
                if not files:
                    raise InputError(f"folder {spec} holds no raster ({', '.join(suffixes)})")
                out.update(files)
            elif fs.exists(p):
                out.add(proto + p)
            else:
                raise InputError(f"{spec} does not exist")
        except InputError:
            raise
        except Exception as exc:
            if remote:
                raise segfs.unreachable(spec, exc) from exc
            raise
    return sorted(out)
