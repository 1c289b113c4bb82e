"""Class polygons from a class-id raster that arrives in strips of rows, in the scene CRS.

`rasterio.features.shapes` runs on each strip as it is written, so the whole mask is never held.
A polygon that touches a strip's internal top or bottom edge may continue in the next strip; those
are kept aside per class and merged (union, then split into parts) at the end, so the output has
the same polygons as polygonising the whole raster at once.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import shapes
from shapely.affinity import affine_transform
from shapely.geometry import mapping, shape

from seg import fs as segfs
from seg.classes import NODATA
from seg.errors import ConfigError

FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}


class Polygonizer:
    """Collect class polygons strip by strip; `features()` gives them in scene coordinates."""

    def __init__(self, height: int, transform: Affine, class_names: list[str]) -> None:
        self.height = height
        self.transform = transform
        self.class_names = class_names
        self.done: list[tuple[int, shapely.Geometry]] = []  # (class id, polygon in pixels)
        self.open: dict[int, list[shapely.Geometry]] = {}  # crossing a strip edge, per class

    def add(self, row_start: int, classes: np.ndarray) -> None:
        """Polygonise rows [row_start, row_start + n) of class ids (n, W) uint8; 255 = no data."""
        n = classes.shape[0]
        valid = classes != NODATA
        if not valid.any():
            return
        # Pixel coordinates of the whole scene: x = column, y = row.
        strip = Affine.translation(0, row_start)
        for geom, value in shapes(classes, mask=valid, connectivity=4, transform=strip):
            poly = shape(geom)
            _, miny, _, maxy = poly.bounds
            crosses = (miny <= row_start and row_start > 0) or (
                maxy >= row_start + n and row_start + n < self.height
            )
            if crosses:
                self.open.setdefault(int(value), []).append(poly)
            else:
                self.done.append((int(value), poly))

    def features(self) -> list[dict[str, Any]]:
        """GeoJSON-like features (class_id, class, area) in the scene CRS, sorted by class."""
        merged = list(self.done)
        for value, polys in self.open.items():
            union = shapely.union_all(polys)
            merged.extend((value, p) for p in shapely.get_parts(union) if not p.is_empty)
        t = self.transform
        matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
        out = []
        for value, poly in sorted(merged, key=lambda vp: (vp[0], vp[1].bounds)):
            geom = affine_transform(poly, matrix)
            name = self.class_names[value] if value < len(self.class_names) else str(value)
            out.append(
                {
                    "type": "Feature",
                    "properties": {"class_id": value, "class": name, "area": float(geom.area)},
                    "geometry": mapping(geom),
                }
            )
        return out


def vector_format(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in FORMATS:
        raise ConfigError(
            f"--vector {path}: unknown format {ext or '(no extension)'}; use .geojson or .gpkg"
        )
    return FORMATS[ext]


def write_vector(path: str, features: list[dict[str, Any]], crs_wkt: str | None) -> None:
    """Write features to GeoJSON or GeoPackage at `path` (local or gs://), atomically."""
    driver = vector_format(path)
    with segfs.local_copy_for_write(path, suffix=os.path.splitext(path)[1]) as tmp:
        if driver == "GeoJSON":
            doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
            if crs_wkt:
                # Coordinates stay in the scene CRS (not RFC 7946's WGS84): name it, GDAL reads it.
                epsg = CRS.from_wkt(crs_wkt).to_epsg()
                name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs_wkt
                doc["crs"] = {"type": "name", "properties": {"name": name}}
            with open(tmp, "w") as f:
                json.dump(doc, f)
        else:
            _write_gpkg(tmp, features, crs_wkt)


def _write_gpkg(path: str, features: list[dict[str, Any]], crs_wkt: str | None) -> None:
    try:
        from pyogrio.raw import write
    except ImportError as exc:  # pragma: no cover - pyogrio is a dependency
        raise ConfigError("writing GeoPackage needs pyogrio (pip install pyogrio)") from exc
    if os.path.exists(path):
        os.remove(path)  # the driver refuses to overwrite an (empty) existing file
    geoms = np.array([shapely.to_wkb(shape(f["geometry"])) for f in features], dtype=object)
    fields = ["class_id", "class", "area"]
    data = [
        np.array([f["properties"][k] for f in features], dtype=dt)
        for k, dt in zip(fields, (np.int32, object, np.float64), strict=True)
    ]
    write(
        path,
        geoms,
        data,
        fields,
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs_wkt,
        layer="classes",
    )
