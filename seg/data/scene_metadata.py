"""Scene metadata as a vector the network is conditioned on (`model.metadata`).

`SceneFacts` is what a scene says about itself: GeoTIFF tags, the sidecar `<scene>.json` that
`seg tile` keeps, and its georeference. `read_values` takes the configured fields out of it
(one clear line, naming the scene, the field and the value, for a value that is not what the
field needs). `MetadataCodec` is fitted on the train split (statistics of numeric fields,
categories) and maps values to the network's input, for one scene:

    (D + F,) float32 = [field 1's code (d1) | ... | field F's code (dF) | present (F)]

A missing field has a zero code and present 0; the network puts its learned "missing"
embedding there (seg.models.conditioning). The codec travels in the checkpoint, so
`seg predict` encodes a new scene exactly as training did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from seg.errors import ConfigError, InputError
from seg.geo.place import scene_place
from seg.metadata_config import MetadataField

if TYPE_CHECKING:
    from seg.data.schema import SceneAttrs
    from seg.geo.raster import SceneInfo

# Where an acquisition time is looked for, in this order (xView2's is capture_date). The TIFF
# DateTime tag comes last: it is often when the file was written, not when it was taken.
TIME_KEYS: tuple[str, ...] = ("datetime", "acquisition_time", "acquired", "capture_date")
TIME_KEYS += ("acquisition_date", "date_time", "date", "time")
TIME_TAGS: tuple[str, ...] = (
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATETIME",
    "ACQUISITION",
    "DATETIME",
)
TIME_TAGS += ("TIFFTAG_DATETIME",)
WIDTHS = {"day_of_year": 2, "hour": 2, "lat": 2, "lon": 2, "gsd": 1, "numeric": 1}


@dataclass(frozen=True)
class SceneFacts:
    """What a scene says about itself (read from its header, or from the window store)."""

    name: str
    tags: dict[str, str]
    sidecar: dict[str, Any]
    crs_wkt: str | None
    transform: tuple[float, ...]
    width: int
    height: int

    @classmethod
    def of_info(cls, info: SceneInfo) -> SceneFacts:
        return cls(
            info.path, info.tags, info.metadata, info.crs_wkt, info.transform, info.width,
            info.height,
        )  # fmt: skip

    @classmethod
    def of_attrs(cls, scene_id: str, attrs: SceneAttrs) -> SceneFacts:
        return cls(
            scene_id, attrs.tags, attrs.metadata, attrs.crs, attrs.transform, attrs.width,
            attrs.height,
        )  # fmt: skip


def _lookup(facts: SceneFacts, keys: tuple[str, ...], tags: tuple[str, ...]) -> Any:
    for key in keys:
        if facts.sidecar.get(key) not in (None, ""):
            return facts.sidecar[key]
    upper = {k.upper(): v for k, v in facts.tags.items()}
    for tag in tags:
        if upper.get(tag.upper()) not in (None, ""):
            return upper[tag.upper()]
    return None


def parse_time(value: Any, *, scene: str) -> tuple[datetime, bool]:
    """An acquisition time (ISO 8601, or TIFF's "YYYY:MM:DD HH:MM:SS"); (time, has a clock)."""
    text = str(value).strip()
    if len(text) >= 10 and text[4] == ":" and text[7] == ":":  # the TIFF DateTime form
        text = text[:4] + "-" + text[5:7] + "-" + text[8:]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"scene {scene}: acquisition time {value!r} does not parse; write it as ISO 8601"
            " (e.g. 2021-06-15T10:30:00Z) in the sidecar's 'datetime'"
        ) from None
    return when, len(text) > 10


def _number(value: Any, *, scene: str, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if isinstance(value, bool) or not math.isfinite(out):
        raise InputError(
            f"scene {scene}: metadata field {name!r} is {value!r}, not a number;"
            " fix the sidecar, or give the field kind: categorical"
        )
    return out


def read_values(fields: list[MetadataField], facts: SceneFacts) -> dict[str, float | str | None]:
    """Each field's raw value for this scene (None where the scene lacks it): a number, or a
    string for categorical fields."""
    out: dict[str, float | str | None] = {}
    place = None
    if any(f.encoding in ("lat", "lon", "gsd") for f in fields):
        place = scene_place(facts.crs_wkt, facts.transform, facts.width, facts.height)
    for f in fields:
        kind, name = f.encoding, f.name
        if kind in ("day_of_year", "hour"):
            raw = _lookup(facts, TIME_KEYS, TIME_TAGS)
            if raw is None:
                out[name] = None
                continue
            when, clock = parse_time(raw, scene=facts.name)
            if kind == "day_of_year":
                out[name] = float(when.timetuple().tm_yday) + when.hour / 24.0
            else:  # hours of the day in UTC where the time says its zone, else as written
                utc = when.astimezone(UTC).timetuple() if when.tzinfo else when.timetuple()
                out[name] = utc.tm_hour + utc.tm_min / 60.0 if clock else None
        elif kind in ("lat", "lon"):
            out[name] = None if place is None else (place.lat if kind == "lat" else place.lon)
        elif kind == "gsd":
            given = _lookup(facts, ("gsd", "gsd_m"), ("GSD",))
            metres = (
                _number(given, scene=facts.name, name=name)
                if given is not None
                else (place.gsd_m if place else None)
            )
            out[name] = None if metres is None or metres <= 0 else metres
        else:
            raw = _lookup(facts, (name,), (name,))
            if raw is None:
                out[name] = None
            elif kind == "categorical":
                out[name] = str(raw)
            else:
                out[name] = _number(raw, scene=facts.name, name=name)
    return out


@dataclass(frozen=True)
class FieldCode:
    """How one field becomes numbers: its encoding and what was fitted on the train split."""

    name: str
    kind: str  # day_of_year, hour, lat, lon, gsd, numeric, categorical
    mean: float = 0.0  # gsd (of its log) and numeric
    std: float = 1.0
    categories: tuple[str, ...] = ()  # categorical; the code has one more slot: "other"

    @property
    def width(self) -> int:
        return len(self.categories) + 1 if self.kind == "categorical" else WIDTHS[self.kind]

    def encode(self, value: float | str) -> np.ndarray:
        if self.kind == "categorical":
            code = np.zeros(self.width, np.float32)
            value = str(value)
            code[self.categories.index(value) if value in self.categories else -1] = 1.0
            return code
        x = float(value)
        if self.kind in ("day_of_year", "hour", "lat", "lon"):
            period = {"day_of_year": 365.25, "hour": 24.0, "lat": 360.0, "lon": 360.0}[self.kind]
            angle = 2.0 * math.pi * x / period
            return np.array([math.sin(angle), math.cos(angle)], np.float32)
        x = math.log(x) if self.kind == "gsd" else x
        return np.array([(x - self.mean) / self.std], np.float32)


@dataclass(frozen=True)
class MetadataCodec:
    """The fitted encoding of every configured field (in the checkpoint as `metadata`)."""

    fields: tuple[FieldCode, ...]
    specs: tuple[MetadataField, ...] = field(compare=False, default=())

    @property
    def widths(self) -> list[int]:
        return [f.width for f in self.fields]

    @property
    def size(self) -> int:
        """Length of an encoded vector: the codes plus one presence flag per field."""
        return sum(self.widths) + len(self.fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @classmethod
    def fit(cls, specs: list[MetadataField], scenes: list[SceneFacts]) -> MetadataCodec:
        """Statistics and categories from the train split's scenes (one value per scene)."""
        values = [read_values(specs, s) for s in scenes]
        codes = []
        for spec in specs:
            seen = [v[spec.name] for v in values if v[spec.name] is not None]
            if not seen:
                raise ConfigError(
                    f"model.metadata field {spec.name!r} is absent from every train scene"
                    f" ({len(scenes)} scenes); add it to their sidecar JSON or drop the field"
                )
            kind = spec.encoding
            if kind == "categorical":
                codes.append(FieldCode(spec.name, kind, categories=tuple(sorted(map(str, seen)))))
            elif kind in ("gsd", "numeric"):
                xs = np.log(np.asarray(seen, float)) if kind == "gsd" else np.asarray(seen, float)
                std = float(xs.std())
                codes.append(FieldCode(spec.name, kind, float(xs.mean()), std if std > 1e-6 else 1))
            else:
                codes.append(FieldCode(spec.name, kind))
        return cls(tuple(codes), tuple(specs))

    def encode(self, facts: SceneFacts) -> tuple[np.ndarray, list[str]]:
        """The scene's vector (D + F,) float32 and the names of the fields it lacks."""
        specs = list(self.specs) or [_spec(f) for f in self.fields]
        values = read_values(specs, facts)
        parts, present, missing = [], [], []
        for code in self.fields:
            value = values.get(code.name)
            if value is None:
                parts.append(np.zeros(code.width, np.float32))
                missing.append(code.name)
            else:
                parts.append(code.encode(value))
            present.append(0.0 if value is None else 1.0)
        vector = np.concatenate([*parts, np.asarray(present, np.float32)]).astype(np.float32)
        return vector, missing

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": [
                {"name": f.name, "kind": f.kind, "mean": f.mean, "std": f.std,
                 "categories": list(f.categories)}
                for f in self.fields
            ]
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetadataCodec:
        codes = tuple(
            FieldCode(
                str(d["name"]),
                str(d["kind"]),
                float(d.get("mean", 0.0)),
                float(d.get("std", 1.0)),
                tuple(str(c) for c in d.get("categories") or []),
            )
            for d in data["fields"]
        )
        return cls(codes)


def _spec(code: FieldCode) -> MetadataField:
    """The config field that reads a fitted field's value back (built-ins read themselves)."""
    kind = code.kind if code.kind in ("numeric", "categorical") else "auto"
    return MetadataField.model_validate({"name": code.name, "kind": kind})
