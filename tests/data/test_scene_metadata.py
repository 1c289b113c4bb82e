"""Scene metadata for conditioning: reading each field from tags, sidecar and georeference,
fitting the codec on the train scenes, encoding (missing fields flagged), and the one-line
refusals of values that are not what a field needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.transform import from_origin

from seg.config import TrainConfig, load_config
from seg.data.scene_metadata import MetadataCodec, SceneFacts, parse_time, read_values
from seg.errors import ConfigError, InputError
from seg.geo.place import scene_place
from seg.metadata_config import MetadataField

UTM36N = "EPSG:32636"


def facts(
    name: str = "s",
    sidecar: dict | None = None,
    tags: dict | None = None,
    crs: str | None = UTM36N,
    pixel: float = 0.5,
) -> SceneFacts:
    transform = tuple(from_origin(450000.0, 35000.0, pixel, pixel))[:6]
    return SceneFacts(name, tags or {}, sidecar or {}, crs, transform, 200, 100)


def fields(*names: str | dict) -> list[MetadataField]:
    return [MetadataField.model_validate(n) for n in names]


def test_time_forms_and_day_of_year_and_hour() -> None:
    when, clock = parse_time("2021-06-15T10:30:00Z", scene="s")
    assert (when.month, when.day, when.hour, clock) == (6, 15, 10, True)
    when, clock = parse_time("2021:06:15 10:30:00", scene="s")  # the TIFF DateTime form
    assert (when.month, when.minute, clock) == (6, 30, True)
    assert parse_time("2021-06-15", scene="s")[1] is False
    got = read_values(
        fields("day_of_year", "hour"), facts(sidecar={"datetime": "2021-02-01T12:00+02:00"})
    )
    assert got["day_of_year"] == pytest.approx(32.5)
    assert got["hour"] == pytest.approx(10.0)  # in UTC
    # A date without a clock has a day but no hour; xView2's capture_date is found too.
    got = read_values(fields("day_of_year", "hour"), facts(sidecar={"capture_date": "2021-01-03"}))
    assert got == {"day_of_year": 3.0, "hour": None}
    got = read_values(fields("day_of_year"), facts(tags={"ACQUISITION": "2026-01-05"}))
    assert got["day_of_year"] == 5.0


def test_place_from_the_georeference_in_any_crs() -> None:
    utm = scene_place(UTM36N, tuple(from_origin(450000.0, 35000.0, 0.5, 0.5))[:6], 200, 100)
    assert utm is not None
    assert utm.lon == pytest.approx(32.55, abs=0.01) and utm.lat == pytest.approx(0.316, abs=0.01)
    assert utm.gsd_m == pytest.approx(0.5, rel=0.01)
    geo = scene_place("EPSG:4326", tuple(from_origin(32.5, 0.3, 1e-5, 1e-5))[:6], 100, 100)
    assert geo is not None and geo.gsd_m == pytest.approx(1.1, rel=0.02)
    # Web Mercator's metres are stretched by 1/cos(lat): at 60 degrees a 1 m pixel is 0.5 m.
    y60 = 8399737.89  # northing of 60 degrees N
    merc = scene_place("EPSG:3857", tuple(from_origin(0, y60, 1, 1))[:6], 2, 2)
    assert merc is not None and merc.gsd_m == pytest.approx(0.5, rel=0.01)
    assert scene_place(None, (1, 0, 0, 0, -1, 0), 10, 10) is None


def test_sidecar_gsd_wins_over_the_transform_and_pixel_space_lacks_place() -> None:
    spec = fields("gsd", "lat", "lon")
    assert read_values(spec, facts())["gsd"] == pytest.approx(0.5, rel=0.01)
    assert read_values(spec, facts(sidecar={"gsd": 0.31}))["gsd"] == 0.31
    assert read_values(spec, facts(crs=None)) == {"gsd": None, "lat": None, "lon": None}


def test_codec_fit_encode_and_round_trip() -> None:
    spec = fields("day_of_year", "gsd", "sun_elevation", "sensor")
    train = [
        facts("a", {"datetime": "2021-06-01", "sun_elevation": 40, "sensor": "WV2"}),
        facts("b", {"datetime": "2021-12-01", "sun_elevation": "60", "sensor": "GE01"}, pixel=1),
    ]
    codec = MetadataCodec.fit(spec, train)
    assert codec.widths == [2, 1, 1, 3]  # sin/cos, log gsd, standardised, 2 sensors + other
    assert codec.size == 7 + 4
    sun = codec.fields[2]
    assert (sun.mean, sun.std) == (50.0, 10.0)
    assert codec.fields[3].categories == ("GE01", "WV2")
    vector, missing = codec.encode(train[0])
    assert missing == [] and vector.dtype == np.float32 and vector.shape == (11,)
    day = 2 * math.pi * 152 / 365.25
    assert vector[:2] == pytest.approx([math.sin(day), math.cos(day)], abs=1e-5)
    assert vector[3] == pytest.approx(-1.0)  # (40 - 50) / 10
    assert list(vector[4:7]) == [0, 1, 0]  # WV2
    assert list(vector[7:]) == [1, 1, 1, 1]
    # A sensor never seen in training takes the "other" slot; absent fields are flagged.
    vector, missing = codec.encode(facts("c", {"sensor": "Pleiades"}))
    assert missing == ["day_of_year", "sun_elevation"]
    assert list(vector[4:7]) == [0, 0, 1]
    assert list(vector[7:]) == [0, 1, 0, 1]
    assert list(vector[:2]) == [0, 0] and vector[3] == 0
    # The checkpoint's copy encodes exactly as the fitted one.
    again = MetadataCodec.from_json(codec.to_json())
    for scene in [*train, facts("c", {"sensor": "Pleiades"})]:
        assert np.array_equal(again.encode(scene)[0], codec.encode(scene)[0])


def test_bad_values_name_the_scene_field_and_value() -> None:
    with pytest.raises(InputError, match=r"scene a: metadata field 'sun_elevation' is 'high'"):
        read_values(fields("sun_elevation"), facts("a", {"sun_elevation": "high"}))
    with pytest.raises(InputError, match=r"scene b: acquisition time 'June 5th' does not parse"):
        read_values(fields("hour"), facts("b", {"datetime": "June 5th"}))
    with pytest.raises(ConfigError, match=r"'off_nadir' is absent from every train scene"):
        MetadataCodec.fit(fields("off_nadir"), [facts("a"), facts("b")])
    # A categorical field takes any value.
    got = read_values(
        fields({"name": "off_nadir", "kind": "categorical"}), facts(sidecar={"off_nadir": "x"})
    )
    assert got == {"off_nadir": "x"}


def test_config_refuses_duplicates_kinds_on_builtins_and_typos() -> None:
    ok = load_config(TrainConfig, None, ["model.metadata=[day_of_year, {name: sensor}, x]"])
    assert [f.encoding for f in ok.model.metadata] == ["day_of_year", "categorical", "numeric"]
    for bad, why in [
        ("model.metadata=[lat, lat]", "fields listed twice"),
        ("model.metadata=[{name: lat, kind: numeric}]", "built-in field"),
        ("model.metadata=[{name: x, knd: numeric}]", "unknown key 'model.metadata.0.knd'"),
        ("model.metadata_mechanism=concat", "model.metadata_mechanism"),
    ]:
        with pytest.raises(ConfigError, match=why):
            load_config(TrainConfig, None, [bad])


def test_an_xview2_sidecar_gives_every_field() -> None:
    """What `python -m data_prep xview2` writes (xView2's label metadata) feeds the fields."""
    side = {
        "sensor": "WORLDVIEW02", "capture_date": "2018-10-05T17:18:05.000Z", "gsd": 2.1,
        "off_nadir_angle": 25.1, "sun_elevation": 50.3, "img_name": "x.png",
    }  # fmt: skip
    spec = fields("day_of_year", "hour", "gsd", "off_nadir_angle", "sun_elevation", "sensor")
    got = read_values(spec, facts(sidecar=side))
    assert got == {
        "day_of_year": pytest.approx(278 + 17 / 24), "hour": pytest.approx(17.3),
        "gsd": 2.1, "off_nadir_angle": 25.1, "sun_elevation": 50.3, "sensor": "WORLDVIEW02",
    }  # fmt: skip
