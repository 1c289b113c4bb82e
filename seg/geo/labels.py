"""Labels for a scene, as uint8 class ids on the scene's own grid, one strip of rows at a time.

Sources:
- a label raster per scene, matched by file name (see `match_labels`) or given explicitly;
  used as is when it is on the scene's grid, else resampled (nearest) when both are
  georeferenced, else refused;
- a vector file (GeoJSON, GeoPackage, anything GDAL/OGR reads) shared by many scenes, reprojected
  to each scene's CRS and rasterized on its grid. A GeoJSON without a `crs` member is
  EPSG:4326 (RFC 7946) unless `label_crs` says otherwise. Class ids come from an attribute
  (integers, or names looked up in the class list) or are 1 for every feature.
For a scene tiled in pixel space (no georeference), vector coordinates are pixel (col, row).
"""

from __future__ import annotations

import os
import re

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_bounds

from seg.classes import IGNORE
from seg.errors import InputError
from seg.geo.grid import Window
from seg.geo.raster import SceneInfo, open_raster
from seg.geo.vectors import VectorLabels
from seg.report import SILENT, Reporter

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".kml", ".gml")
_SCENE_SUFFIX = re.compile(r"([_-](image|img|rgb|scene))$", re.IGNORECASE)


def is_vector(path: str) -> bool:
    return str(path).lower().endswith(VECTOR_SUFFIXES)


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path).rstrip("/")))[0]


def scene_base(scene_stem: str) -> str:
    """`kampala_z21_1024x1024_image` -> `kampala_z21_1024x1024` (label files start with it)."""
    return _SCENE_SUFFIX.sub("", scene_stem)


def _label_candidates(pool: list[str]) -> dict[str, set[str]]:
    """For each file of `pool`, the other files that could be its label by the naming rule.

    A file whose stem is `a_b-c` can only be the label of a scene whose stem is `a_b-c` or whose
    base is `a` or `a_b`: look those prefixes up instead of comparing every pair of names.
    """
    stems = {p: stem(p) for p in pool}
    by_stem: dict[str, list[str]] = {}
    by_base: dict[str, list[str]] = {}
    for p in pool:
        by_stem.setdefault(stems[p], []).append(p)
        by_base.setdefault(scene_base(stems[p]), []).append(p)
    cands: dict[str, set[str]] = {p: set() for p in pool}
    for f in pool:
        name = stems[f]
        owners = set(by_stem[name])
        for i, ch in enumerate(name):
            if ch in "_-":
                owners.update(by_base.get(name[:i], ()))
        owners.discard(f)
        for owner in owners:
            cands[owner].add(f)
    return cands


def match_labels(
    scenes: list[str], files: list[str], mapping: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Pair scenes with label rasters from `files` by name; returns (scenes left, scene -> label).

    Rule (also in the README): a label for scene `S.tif` is `S.tif` in another folder, or a file
    whose name starts with S's base and `_` or `-`, where the base is S without a trailing
    `_image`/`_img`/`_rgb`/`_scene` (`city_image.tif` -> `city_mask.tif`, `city_buildings.tif`).
    When one file could belong to several scenes the longest base wins. A file that has no label
    of its own but is the label of a scene is a label, not a scene, so scenes and labels may share
    a folder. `mapping` (scene id -> label path) takes precedence over names.
    """
    mapping = mapping or {}
    pool = sorted(set(files) | set(scenes))
    cands = _label_candidates(pool)
    labels_of: dict[str, list[str]] = {}
    label_files: set[str] = set()
    scene_set = set(scenes)
    for f in files:
        owners = [s for s in scenes if s != f and f in cands[s]]
        if not owners or (f in scene_set and cands[f]):
            continue
        exact = [s for s in owners if stem(s) == stem(f)]
        owner = exact[0] if exact else max(owners, key=lambda s: len(scene_base(stem(s))))
        labels_of.setdefault(owner, []).append(f)
        label_files.add(f)
    kept = [s for s in scenes if s not in label_files]
    out: dict[str, str] = {}
    for s in kept:
        sid = stem(s)
        if sid in mapping:
            out[s] = mapping[sid]
            continue
        found = labels_of.get(s, [])
        exact = [f for f in found if stem(f) == sid]
        if exact:
            found = exact
        if not found:
            raise InputError(
                f"no label raster for scene {s} (expected {sid}.tif in the labels folder or a"
                f" file named {scene_base(sid)}_*.tif); add it, or map it in the config's"
                " labels_map"
            )
        if len(found) > 1:
            raise InputError(
                f"several label rasters fit scene {s}: {', '.join(sorted(found))}; choose one with"
                " the config's labels_map {scene_id: path}"
            )
        out[s] = found[0]
    return kept, out


class SceneLabels:
    """Class ids (h, W) uint8 for strips of one scene; 255 where the label itself has no data."""

    def __init__(
        self, info: SceneInfo, source: str | VectorLabels, reporter: Reporter = SILENT
    ) -> None:
        self.info = info
        self.source = source
        self.geoms: np.ndarray | None = None
        if isinstance(source, VectorLabels):
            self.geoms, self.values = source.for_scene(info, reporter)
            self.tree = shapely.STRtree(self.geoms)
        else:
            self._check_raster(source)

    def describe(self) -> str:
        return self.source.path if isinstance(self.source, VectorLabels) else str(self.source)

    def _check_raster(self, path: str) -> None:
        info = self.info
        with open_raster(path) as lds:
            if np.dtype(lds.dtypes[0]).kind not in "uif":
                raise InputError(
                    f"label raster {path} has {lds.dtypes[0]} pixels; class ids must be integers"
                )
            same_size = (lds.width, lds.height) == (info.width, info.height)
            lgeo = lds.crs is not None
            close = np.allclose(
                tuple(lds.transform)[:6], info.transform, rtol=0, atol=abs(info.transform[0]) * 1e-3
            )
            same_crs = (
                (not lgeo)
                or info.crs_wkt is None
                or CRS.from_wkt(info.crs_wkt).equals(CRS.from_user_input(lds.crs.to_wkt()))
            )
            if same_size and (not lgeo or info.pixel_space or (close and same_crs)):
                self.mode = "direct"
            elif lgeo and not info.pixel_space and info.crs_wkt:
                lb = transform_bounds(lds.crs, CRS.from_wkt(info.crs_wkt), *lds.bounds)
                sb = rasterio.transform.array_bounds(info.height, info.width, info.affine)
                if lb[0] >= sb[2] or lb[2] <= sb[0] or lb[1] >= sb[3] or lb[3] <= sb[1]:
                    raise InputError(f"label raster {path} does not overlap scene {info.path}")
                self.mode = "reproject"
            else:
                raise InputError(
                    f"label raster {path} is {lds.width}x{lds.height}, scene {info.path} is"
                    f" {info.width}x{info.height}, and without a georeference on both there is no"
                    " unambiguous way to align them; resample the label to the scene's grid"
                )

    def strip(self, row_off: int, height: int) -> np.ndarray:
        info = self.info
        transform = info.affine @ Affine.translation(0, row_off)
        if self.geoms is not None:
            out = np.zeros((height, info.width), np.uint8)
            if len(self.geoms):
                b = rasterio.transform.array_bounds(height, info.width, transform)
                idx = self.tree.query(shapely.box(*b))
                if len(idx):
                    idx = np.sort(idx)  # file order: later features paint over earlier ones
                    shapes = zip(self.geoms[idx], self.values[idx].tolist(), strict=True)
                    rasterize(shapes, out_shape=out.shape, transform=transform, out=out)
            return out
        with open_raster(str(self.source)) as lds:
            if self.mode == "direct":
                win = Window(row_off, 0, height, info.width).to_rasterio()
                data = lds.read(1, window=win)
                if lds.mask_flag_enums[0] == [MaskFlags.all_valid] and data.dtype == np.uint8:
                    return data  # (h, W): no nodata to mark, no range to check
                valid = lds.read_masks(1, window=win) > 0
            else:
                data = np.full((height, info.width), IGNORE, np.float64)
                reproject(
                    rasterio.band(lds, 1),
                    data,
                    dst_transform=transform,
                    dst_crs=CRS.from_wkt(info.crs_wkt or "").to_wkt(),
                    dst_nodata=IGNORE,
                    resampling=Resampling.nearest,
                )
                valid = data != IGNORE
        if data.dtype == np.uint8:  # the common case: no range to check, no copy when all valid
            return data if valid.all() else np.where(valid, data, np.uint8(IGNORE))
        if data.dtype.kind == "f" and np.any(data[valid] != np.round(data[valid])):
            raise InputError(
                f"label raster {self.source} has non-integer values (e.g."
                f" {data[valid][data[valid] != np.round(data[valid])][0]:g}); class ids are whole"
                " numbers"
            )
        if data.size and (np.nanmin(data) < 0 or np.nanmax(data[valid], initial=0) > IGNORE):
            raise InputError(
                f"label raster {self.source} has values outside 0..255; class ids must fit uint8"
            )
        out = np.where(valid, data, IGNORE).astype(np.uint8)
        return out
