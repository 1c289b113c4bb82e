"""Vector labels (GeoJSON, GeoPackage, anything GDAL/OGR reads) for `seg tile`.

Features are read once per file, reprojected to each scene's CRS and later rasterized on its grid
(see labels.SceneLabels). A GeoJSON without a `crs` member is EPSG:4326 (RFC 7946) unless the user
gives `label_crs`; "scene" means the coordinates are in each scene's own CRS (and, for scenes
tiled in pixel space, pixel (col, row) coordinates). Class ids come from an attribute (integers,
or names looked up in the class list) or are 1 for every feature; lines and points can be grown by
a buffer in metres (road centre lines -> road areas).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer

from seg import fs as segfs
from seg.classes import IGNORE
from seg.errors import InputError
from seg.geo.raster import SceneInfo
from seg.report import SILENT, Reporter


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
        *,
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
            geoms = [_shape(f, i, path) for i, f in enumerate(features)]
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

    def for_scene(
        self, info: SceneInfo, reporter: Reporter = SILENT
    ) -> tuple[np.ndarray, np.ndarray]:
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
            reporter.warn(
                f"no label geometry of {self.path} overlaps scene {info.path};"
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


def _shape(feature: dict[str, Any], index: int, path: str) -> Any:
    """A feature's geometry, or one line naming the feature whose geometry is broken (a polygon
    of one coordinate, coordinates that are strings ...)."""
    geometry = feature.get("geometry")
    if not geometry:
        return None
    try:
        return shapely.geometry.shape(geometry)
    except Exception as exc:  # shapely raises ValueError, TypeError, GEOSException ...
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"{path}: feature {index} has an invalid geometry ({reason})") from exc
