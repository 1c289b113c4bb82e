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

import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window as RioWindow
from rich.console import Console

from seg import fs as segfs
from seg.errors import InputError
from seg.raster import SceneInfo, open_raster

IGNORE = 255
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".kml", ".gml")
_SCENE_SUFFIX = re.compile(r"([_-](image|img|rgb|scene))$", re.IGNORECASE)
_console = Console(stderr=True)


def is_vector(path: str) -> bool:
    return str(path).lower().endswith(VECTOR_SUFFIXES)


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path).rstrip("/")))[0]


def scene_base(scene_stem: str) -> str:
    """`kampala_z21_1024x1024_image` -> `kampala_z21_1024x1024` (label files start with it)."""
    return _SCENE_SUFFIX.sub("", scene_stem)


def _candidates(scene: str, files: list[str]) -> list[str]:
    s = stem(scene)
    base = scene_base(s)
    out = []
    for f in files:
        if f == scene:
            continue
        fs_ = stem(f)
        if fs_ == s or fs_.startswith(base + "_") or fs_.startswith(base + "-"):
            out.append(f)
    return out


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
    has_own = {f: bool(_candidates(f, pool)) for f in pool}
    labels_of: dict[str, list[str]] = {}
    label_files: set[str] = set()
    for f in files:
        owners = [s for s in scenes if s != f and f in _candidates(s, pool) and has_own[s]]
        if not owners or (f in scenes and has_own.get(f, False)):
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


def _crs_from_geojson(doc: dict[str, Any], path: str) -> CRS | None:
    member = doc.get("crs")
    if not member:
        return None
    try:
        return CRS.from_user_input(member.get("properties", {}).get("name"))
    except Exception as exc:
        raise InputError(f"{path}: cannot read its crs member {member!r}: {exc}") from exc


@dataclass
class VectorLabels:
    """Geometries (in `crs`) and a class id per geometry, from one vector file."""

    path: str
    geoms: np.ndarray  # (n,) shapely geometries
    values: np.ndarray  # (n,) uint8 class ids
    crs: CRS | None  # None: the scene's own CRS (label_crs "scene")
    buffer_m: float = 0.0  # grow lines/points/polygons by this many metres before rasterizing

    @classmethod
    def load(
        cls,
        path: str,
        attribute: str | None,
        classes: list[str],
        crs_override: str | None = None,
        buffer_m: float = 0.0,
    ) -> VectorLabels:
        try:
            raw = segfs.read_bytes(path)
        except FileNotFoundError as exc:
            raise InputError(f"label file {path} does not exist") from exc
        crs: CRS | None
        if str(path).lower().endswith((".geojson", ".json")):
            try:
                doc = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"label file {path} is not valid JSON: {exc}") from exc
            features = _geojson_features(doc, path)
            geoms = [
                shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None
                for f in features
            ]
            props = [f.get("properties") or {} for f in features]
            crs = _crs_from_geojson(doc, path)
            defaulted = crs is None
            crs = crs or CRS.from_epsg(4326)
        else:
            from pyogrio.errors import DataSourceError
            from pyogrio.raw import read

            try:
                meta, _, wkb, field_data = read(io.BytesIO(raw))
            except DataSourceError as exc:
                raise InputError(
                    f"label file {path} is not a vector file GDAL can read: {exc}"
                ) from exc
            geoms = list(shapely.from_wkb(wkb))
            names = list(meta["fields"])
            props = [
                {n: col[i] for n, col in zip(names, field_data, strict=True)}
                for i in range(len(geoms))
            ]
            crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else None
            defaulted = crs is None
        if crs_override == "scene":
            crs, defaulted = None, False
        elif crs_override:
            try:
                crs, defaulted = CRS.from_user_input(crs_override), False
            except Exception as exc:
                raise InputError(
                    f"label CRS {crs_override!r} is not a CRS pyproj knows: {exc}"
                ) from exc
        keep = [i for i, g in enumerate(geoms) if g is not None and not g.is_empty]
        values = np.array(
            [_class_value(props[i], attribute, classes, path) for i in keep], np.uint8
        )
        arr = np.array([geoms[i] for i in keep], dtype=object)
        if defaulted and len(arr) and crs is not None and crs.is_geographic:
            x0, y0, x1, y1 = shapely.total_bounds(arr)
            if x0 < -180.5 or x1 > 180.5 or y0 < -90.5 or y1 > 90.5:
                raise InputError(
                    f"{path} has no CRS, so it is read as EPSG:4326 (RFC 7946), but its coordinates"
                    f" ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) are not longitude/latitude; give"
                    " its CRS with --label-crs (e.g. the scene's EPSG code)"
                )
        return cls(str(path), arr, values, crs, buffer_m)

    def for_scene(self, info: SceneInfo) -> tuple[np.ndarray, np.ndarray]:
        """Geometries in the scene's CRS (pixel coordinates for pixel-space scenes), values."""
        geoms = self.geoms
        src = self.crs
        if not info.pixel_space and src is not None and info.crs_wkt:
            dst = CRS.from_wkt(info.crs_wkt)
            if self.buffer_m > 0 and not _metric(src):
                local = _local_utm(geoms, src)
                geoms, src = _reproject(geoms, src, local), local
            if self.buffer_m > 0:
                geoms = shapely.buffer(geoms, self.buffer_m)
            if not dst.equals(src):
                geoms = _reproject(geoms, src, dst)
        elif self.buffer_m > 0:
            geoms = shapely.buffer(geoms, self.buffer_m)  # scene CRS / pixel units: taken as is
        b = rasterio.transform.array_bounds(info.height, info.width, info.affine)  # w, s, e, n
        footprint = shapely.box(*b)
        hit = shapely.intersects(geoms, footprint) if len(geoms) else np.zeros(0, bool)
        if not hit.any():
            _console.print(
                f"[yellow]warning:[/] no label geometry of {self.path} overlaps scene {info.path};"
                " its mask is all background"
            )
        return geoms[hit], self.values[hit]


def _metric(crs: CRS) -> bool:
    return crs.is_projected and crs.axis_info[0].unit_name in ("metre", "meter")


def _local_utm(geoms: np.ndarray, crs: CRS) -> CRS:
    """The UTM zone at the centre of `geoms`, to buffer by metres."""
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    x0, y0, x1, y1 = shapely.total_bounds(_reproject(geoms, crs, CRS.from_epsg(4326)))
    lon, lat = (x0 + x1) / 2, (y0 + y1) / 2
    info = query_utm_crs_info("WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    return CRS.from_epsg(int(info[0].code))


def _reproject(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    t = Transformer.from_crs(src, dst, always_xy=True)

    def fwd(xy: np.ndarray) -> np.ndarray:  # (n, 2) coordinates -> (n, 2)
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fwd)


def _geojson_features(doc: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    if isinstance(doc, dict) and "coordinates" in doc:
        return [{"geometry": doc, "properties": {}}]
    raise InputError(f"{path} is not GeoJSON (no FeatureCollection, Feature or geometry)")


def _class_value(
    props: dict[str, Any], attribute: str | None, classes: list[str], path: str
) -> int:
    if attribute is None:
        return 1
    if attribute not in props:
        raise InputError(
            f"{path}: a feature has no attribute {attribute!r} (it has {sorted(props)});"
            " choose another --label-attr, or leave it out to label every feature class 1"
        )
    v = props[attribute]
    if isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.strip().isdigit()):
        value = int(v)
    elif isinstance(v, str) and v in classes:
        value = classes.index(v)
    else:
        raise InputError(
            f"{path}: {attribute}={v!r} is neither a class id nor one of the classes {classes};"
            " set `classes` in the tile config"
        )
    if not 0 <= value < IGNORE:
        raise InputError(f"{path}: class id {value} is outside 0..254")
    return value


class SceneLabels:
    """Class ids (h, W) uint8 for strips of one scene; 255 where the label itself has no data."""

    def __init__(self, info: SceneInfo, source: str | VectorLabels) -> None:
        self.info = info
        self.source = source
        self.geoms: np.ndarray | None = None
        if isinstance(source, VectorLabels):
            self.geoms, self.values = source.for_scene(info)
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
                win = RioWindow(0, row_off, info.width, height)
                data = lds.read(1, window=win)
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
        if data.size and (np.nanmin(data) < 0 or np.nanmax(data[valid], initial=0) > IGNORE):
            raise InputError(
                f"label raster {self.source} has values outside 0..255; class ids must fit uint8"
            )
        out = np.where(valid, data, IGNORE).astype(np.uint8)
        return out
