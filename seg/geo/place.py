"""Where a scene is and how fine its pixels are, from its georeference alone (any CRS): the
centre in longitude/latitude and the ground sample distance in metres. Model conditioning
(seg.data.scene_metadata) reads them; no sidecar is needed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS, Geod, Transformer

WGS84 = Geod(ellps="WGS84")


@dataclass(frozen=True)
class Place:
    lon: float
    lat: float
    gsd_m: float  # square root of one pixel's ground area


def scene_place(
    crs_wkt: str | None, transform: tuple[float, ...], width: int, height: int
) -> Place | None:
    """The scene's centre and GSD; None for a scene without a CRS (pixel space)."""
    if not crs_wkt:
        return None
    crs = CRS.from_user_input(crs_wkt)
    affine = Affine(*transform[:6])
    x, y = affine @ (width / 2.0, height / 2.0)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    # On the ground, not in CRS units: one pixel's steps along its rows and columns measured
    # on the ellipsoid (degrees, feet and Web Mercator's stretched metres all come out right).
    cx, cy = affine @ (width / 2.0 + 1.0, height / 2.0)
    rx, ry = affine @ (width / 2.0, height / 2.0 + 1.0)
    (lon_c, lon_r), (lat_c, lat_r) = to_lonlat.transform([cx, rx], [cy, ry])
    across = WGS84.inv(lon, lat, lon_c, lat_c)[2]
    down = WGS84.inv(lon, lat, lon_r, lat_r)[2]
    gsd = math.sqrt(abs(across * down))
    return Place(lon=float(lon), lat=float(lat), gsd_m=float(gsd))
