"""xView2 label JSON -> GeoJSON (+ the scene's sidecar metadata JSON).

An xView2 label file holds each building twice, as WKT in longitude/latitude
(`features.lng_lat`) and in image pixels (`features.xy`), each with `feature_type`, `subtype`
(damage level, post-disaster only) and `uid`, plus `metadata` (sensor, capture date, gsd,
off-nadir and sun angles, image name...). We write one GeoJSON FeatureCollection per label file
with a `class_id` per feature, and `<image stem>.json` holding the metadata, which `seg tile`
keeps in the scene's attributes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import shapely
import shapely.wkt

from seg import fs as segfs
from seg.errors import InputError

DAMAGE = ["background", "no-damage", "minor-damage", "major-damage", "destroyed", "un-classified"]
BUILDING = ["background", "building"]


@dataclass
class Converted:
    geojson: str
    metadata: str
    features: int
    classes: list[str]


def convert(
    label_json: str, out_dir: str, coords: str = "lng_lat", scheme: str = "building"
) -> Converted:
    """Write `<label stem>.geojson` and `<image stem>.json` into `out_dir`."""
    if coords not in ("lng_lat", "xy"):
        raise InputError(f"--coords must be lng_lat or xy, not {coords!r}")
    classes = {"building": BUILDING, "damage": DAMAGE}.get(scheme)
    if classes is None:
        raise InputError(f"--scheme must be building or damage, not {scheme!r}")
    try:
        doc = json.loads(segfs.read_bytes(label_json))
        items = doc["features"][coords]
        meta: dict[str, Any] = dict(doc.get("metadata") or {})
    except FileNotFoundError as exc:
        raise InputError(f"{label_json} does not exist") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{label_json} is not an xView2 label file (features.{coords} missing)"
        ) from exc
    features = []
    for item in items:
        props = dict(item.get("properties") or {})
        try:
            geom = shapely.wkt.loads(item["wkt"])
        except Exception as exc:
            raise InputError(
                f"{label_json}: bad WKT for feature {props.get('uid')}: {exc}"
            ) from exc
        if scheme == "damage":
            subtype = props.get("subtype", "un-classified")
            if subtype not in DAMAGE:
                raise InputError(
                    f"{label_json}: unknown damage subtype {subtype!r}; expected {DAMAGE[1:]}"
                )
            props["class_id"] = DAMAGE.index(subtype)
        else:
            props["class_id"] = 1
        features.append(
            {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(geom)}
        )
    stem = os.path.splitext(os.path.basename(label_json))[0]
    name = str(meta.get("img_name") or stem)
    if os.path.basename(name.replace("\\", "/")) != name or name in (".", ".."):
        raise InputError(
            f"{label_json}: metadata.img_name {name!r} is not a plain file name; the sidecar would"
            " land outside the output folder"
        )
    image_stem = os.path.splitext(name)[0]  # checked before anything is written
    if os.path.realpath(segfs.join(out_dir, f"{image_stem}.json")) == os.path.realpath(label_json):
        raise InputError(f"{label_json}: its sidecar would overwrite the label file itself")
    out_geojson = segfs.join(out_dir, f"{stem}.geojson")
    collection = {"type": "FeatureCollection", "features": features}
    segfs.write_bytes_atomic(out_geojson, json.dumps(collection).encode())
    out_meta = segfs.join(out_dir, f"{image_stem}.json")
    segfs.write_bytes_atomic(out_meta, json.dumps(meta, indent=1).encode())
    return Converted(out_geojson, out_meta, len(features), classes)
