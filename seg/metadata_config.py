"""The `model.metadata` fields of a train config: which scene metadata conditions the network
and how each is encoded (seg.data.scene_metadata reads and encodes them; seg.models.conditioning
turns the vector into per-channel scales and shifts).

A field is a name, optionally with its kind:

    model:
      metadata: [day_of_year, hour, lat, lon, gsd, sun_elevation, {name: sensor}]

Built-in names: `day_of_year` and `hour` (sin/cos of the acquisition time), `lat` and `lon` (the
scene centre, sin/cos), `gsd` (log of the ground sample distance in metres); `sensor` and
`platform` are categorical. Any other name is a numeric sidecar/tag value, standardised with
the train split's statistics, unless its kind says `categorical` (one-hot, with an "other"
slot for values not seen in training).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

# name -> how it is encoded (seg.data.scene_metadata.FieldCode.kind)
BUILTIN: dict[str, str] = {
    "day_of_year": "day_of_year",
    "hour": "hour",
    "lat": "lat",
    "lon": "lon",
    "gsd": "gsd",
    "sensor": "categorical",
    "platform": "categorical",
}


class MetadataField(BaseModel):
    """One conditioning field: a built-in name, or a sidecar/tag key and its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    # "auto": the built-in encoding of a built-in name, "numeric" for any other.
    kind: Literal["auto", "numeric", "categorical"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> MetadataField:
        if not self.name.strip():
            raise ValueError("a metadata field needs a name")
        builtin = BUILTIN.get(self.name)
        if builtin and builtin != "categorical" and self.kind != "auto":
            raise ValueError(f"{self.name!r} is a built-in field; drop its kind")
        return self

    @property
    def encoding(self) -> str:
        """day_of_year, hour, lat, lon, gsd, numeric or categorical."""
        if self.kind != "auto":
            return self.kind
        return BUILTIN.get(self.name, "numeric")


def check_unique(fields: list[MetadataField]) -> list[MetadataField]:
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"fields listed twice: {twice}")
    return fields
