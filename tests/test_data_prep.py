"""data_prep converters on generated inputs, checked against `seg tile` on the results."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import cli_runner, write_geotiff
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin

from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def prep(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `python -m data_prep ...` in-process -> (exit code, stdout, stderr)."""
    from data_prep.cli import main

    return cli_runner(main, "data_prep", capsys)


def _mask(seg_run: Run, tmp_path: Path, name: str, *args: object) -> np.ndarray:
    code, _, err = seg_run("tile", *args, "--out", tmp_path / f"{name}.zarr", "--size", "64", "-q")
    assert code == 0, err
    return WindowStore.open(str(tmp_path / f"{name}.zarr")).scenes()[0].mask[0]


def test_xview2_lnglat_and_pixel_coordinates_agree(tmp_path: Path, prep: Run, seg_run: Run) -> None:
    # A 64x64 scene in EPSG:4326 at (10.0 E, 50.0 N), 0.0001 degree pixels.
    px = 0.0001
    scene = write_geotiff(
        tmp_path / "hurricane_001_post_disaster.tif",
        np.full((3, 64, 64), 90, np.uint8),
        crs="EPSG:4326",
        transform=from_origin(10.0, 50.0, px, px),
    )
    boxes = [(4, 6, 20, 30, "no-damage"), (40, 30, 60, 50, "destroyed")]  # col0,row0,col1,row1
    lnglat, xy = [], []
    for c0, r0, c1, r1, sub in boxes:
        ring = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]
        xy.append(
            {
                "properties": {"feature_type": "building", "subtype": sub, "uid": f"u{c0}"},
                "wkt": "POLYGON ((" + ", ".join(f"{c} {r}" for c, r in ring) + "))",
            }
        )
        lnglat.append(
            {
                "properties": {"feature_type": "building", "subtype": sub, "uid": f"u{c0}"},
                "wkt": "POLYGON (("
                + ", ".join(f"{10 + c * px} {50 - r * px}" for c, r in ring)
                + "))",
            }
        )
    meta = {
        "sensor": "WORLDVIEW02",
        "gsd": 2.1,
        "off_nadir_angle": 21.5,
        "sun_elevation": 60.2,
        "capture_date": "2017-08-31T17:00:00Z",
        "img_name": "hurricane_001_post_disaster.png",
    }
    src = tmp_path / "hurricane_001_post_disaster_label.json"
    src.write_text(json.dumps({"features": {"lng_lat": lnglat, "xy": xy}, "metadata": meta}))
    out = tmp_path / "geo"
    code, _, err = prep("xview2", src, "--out", out, "--scheme", "damage")
    assert code == 0, err
    assert json.loads((out / "hurricane_001_post_disaster.json").read_text()) == meta
    gj = out / "hurricane_001_post_disaster_label.geojson"
    classes = (
        "classes=[background, no-damage, minor-damage, major-damage, destroyed, un-classified]"
    )
    geo = _mask(
        seg_run,
        tmp_path,
        "geo",
        scene,
        "--labels",
        gj,
        "--label-attr",
        "class_id",
        "--set",
        classes,
    )
    assert (
        (geo[6:30, 4:20] == 1).all()
        and (geo[30:50, 40:60] == 4).all()
        and (geo == 0).sum() == 64 * 64 - 16 * 24 - 20 * 20
    )
    # The pixel-coordinate variant on an un-georeferenced copy of the scene gives the same mask.
    code, _, err = prep(
        "xview2", src, "--out", tmp_path / "px", "--coords", "xy", "--scheme", "damage"
    )
    assert code == 0, err
    bare = tmp_path / "bare.tif"
    with rasterio.open(
        bare, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8"
    ) as dst:
        dst.write(np.full((3, 64, 64), 90, np.uint8))
    pix = _mask(
        seg_run,
        tmp_path,
        "pix",
        bare,
        "--labels",
        tmp_path / "px" / gj.name,
        "--label-attr",
        "class_id",
        "--set",
        classes,
        "--pixel-space",
        "--label-crs",
        "scene",
    )
    np.testing.assert_array_equal(pix, geo)
    code, _, err = prep("xview2", tmp_path / "nope.json", "--out", out)
    assert code == 1 and err.startswith("data_prep: error:") and len(err.strip().splitlines()) == 1


def test_spacenet_roads_to_geojson_and_mask(tmp_path: Path, prep: Run, seg_run: Run) -> None:
    scene = write_geotiff(
        tmp_path / "roads.tif", np.full((1, 64, 64), 300, np.uint16)
    )  # EPSG:32633 0.5 m
    feats = [
        {
            "type": "Feature",
            "properties": {"road_type": "3"},
            "geometry": {
                "type": "LineString",
                "coordinates": [[500002, 3999984], [500030, 3999984]],
            },
        },
        {
            "type": "Feature",
            "properties": {"road_type": "5"},
            "geometry": None,
        },  # SpaceNet has empties
    ]
    src = tmp_path / "sn.geojson"
    src.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": feats,
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
            }
        )
    )
    out = tmp_path / "sn_classes.geojson"
    code, stdout, err = prep(
        "spacenet", src, "--out", out, "--attr", "road_type", "--mask-for", scene, "--buffer", "2"
    )
    assert code == 0, err
    assert "1 features (1 empty dropped)" in stdout
    doc = json.loads(out.read_text())
    assert doc["features"][0]["properties"]["class_id"] == 3 and "crs" in doc
    with rasterio.open(tmp_path / "sn_classes_mask.tif") as m:
        mask = m.read(1)
        assert m.crs.to_epsg() == 32633 and (m.width, m.height) == (64, 64)
    # A 4 m wide road (8 px) along row 32; seg tile with the same buffer gives the same mask.
    assert (mask[28:36, 8:56] == 3).all() and (mask[:26] == 0).all() and (mask[38:] == 0).all()
    tiled = _mask(
        seg_run,
        tmp_path,
        "sn",
        scene,
        "--labels",
        out,
        "--label-attr",
        "class_id",
        "--label-buffer",
        "2",
        "--set",
        "classes=[bg, a, b, road]",
    )
    np.testing.assert_array_equal(tiled, mask)


def test_palette_png_to_class_mask(tmp_path: Path, prep: Run) -> None:
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((3, 8, 10), np.uint8))
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[:4] = (255, 0, 0)  # building
    rgb[6:, :5] = (0, 0, 255)  # water
    rgb[7, 9] = (1, 2, 3)  # a colour not in the palette
    Image.fromarray(rgb).save(tmp_path / "m.png")
    pal = "0,0,0=background;255,0,0=building;0,0,255=water"
    code, stdout, err = prep(
        "palette",
        tmp_path / "m.png",
        "--palette",
        pal,
        "--like",
        scene,
        "--out",
        tmp_path / "m.tif",
    )
    assert code == 0, err
    assert "1 pixels of unknown colour" in stdout
    with rasterio.open(tmp_path / "m.tif") as m, rasterio.open(scene) as s:
        cls = m.read(1)
        assert m.crs == s.crs and m.transform == s.transform
        assert json.loads(m.tags()["CLASSES"]) == ["background", "building", "water"]
    assert (cls[:4] == 1).all() and (cls[6:, :5] == 2).all() and cls[7, 9] == 255 and cls[5, 5] == 0
    (tmp_path / "pal.yaml").write_text(
        "background: [0, 0, 0]\nbuilding: [255, 0, 0]\nwater: [0, 0, 255]\n"
    )
    code, _, err = prep(
        "palette",
        tmp_path / "m.png",
        "--palette",
        tmp_path / "pal.yaml",
        "--out",
        tmp_path / "n.tif",
        "--strict",
    )
    assert code == 1 and "(1,2,3)" in err and not (tmp_path / "n.tif").exists()


def test_webtiles_mosaic_is_georeferenced(tmp_path: Path, prep: Run) -> None:
    z, chip = 18, 64
    chips = {(140000, 130000): 50, (140001, 130000): 100, (140000, 130001): 150}  # (x, y) -> value
    for (x, y), v in chips.items():
        folder = tmp_path / "tiles" / str(z) / str(x)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((chip, chip, 3), v, np.uint8)).save(folder / f"{y}.png")
    out = tmp_path / "mosaic.tif"
    code, _, err = prep("webtiles", tmp_path / "tiles", "--out", out)
    assert code == 0, err
    with rasterio.open(out) as m:
        assert m.crs.to_epsg() == 3857 and (m.width, m.height) == (128, 128)
        # The top-left corner is tile (140000, 130000)'s corner, from the slippy-map formulas.
        n = 2**z
        lon = 140000 / n * 360 - 180
        lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * 130000 / n))))
        x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
        assert m.transform.c == pytest.approx(x0, abs=1e-3) and m.transform.f == pytest.approx(
            y0, abs=1e-3
        )
        data, valid = m.read(1), m.dataset_mask()
    assert (
        (data[:64, :64] == 50).all()
        and (data[:64, 64:] == 100).all()
        and (data[64:, :64] == 150).all()
    )
    assert (valid[64:, 64:] == 0).all() and (valid[:64] == 255).all()  # the missing chip is nodata
    # The sidecar `seg tile` keeps: the zoom, and the ground sample distance (Web Mercator's
    # nominal metres x cos(latitude)), which agrees with what the georeference says.
    side = json.loads((tmp_path / "mosaic.json").read_text())
    assert side["zoom"] == z
    nominal = 2 * 20037508.342789244 / n / chip
    assert side["gsd"] == pytest.approx(nominal * math.cos(math.radians(lat)), rel=1e-3)
    from seg.geo.place import scene_place

    with rasterio.open(out) as m:
        place = scene_place(m.crs.to_wkt(), tuple(m.transform)[:6], m.width, m.height)
    # (within 1 %: the sidecar is on the sphere Web Mercator assumes, place on WGS84)
    assert place is not None and place.gsd_m == pytest.approx(side["gsd"], rel=1e-2)


@pytest.mark.parametrize("name", ["../../escaped.png", "/tmp/abs.png", "sub/dir.png"])
def test_xview2_image_name_cannot_escape_the_output_folder(
    tmp_path: Path, prep: Run, name: str
) -> None:
    src = tmp_path / "in" / "x_label.json"
    src.parent.mkdir()
    doc = {"features": {"lng_lat": [], "xy": []}, "metadata": {"img_name": name}}
    src.write_text(json.dumps(doc))
    out = tmp_path / "in" / "out"
    code, _, err = prep("xview2", src, "--out", out)
    assert code == 1 and "not a plain file name" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "escaped.json").exists()


@pytest.mark.parametrize(
    ("palette", "file_text", "says"),
    [
        ("a,b,c=building", None, "whole numbers"),
        ("255,0=building", None, "r,g,b colour in 0..255"),
        ("255,0,0=", None, "needs a class name"),
        ("pal.yaml", "building: !!python/object:os.system [echo]\n", "not JSON or YAML"),
        ("pal.yaml", "building: 5\n", "whole numbers"),
        ("pal.yaml", "building: [a, b, c]\n", "whole numbers"),
        ("pal.yaml", "- [1, 2, 3]\n", "must map class names"),
        ("pal.yaml", "{building: [1, 2\n", "not JSON or YAML"),
    ],
)
def test_a_bad_palette_is_one_line(
    tmp_path: Path, prep: Run, palette: str, file_text: str | None, says: str
) -> None:
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "m.png")
    if file_text is not None:
        (tmp_path / palette).write_text(file_text)
        palette = str(tmp_path / palette)
    out = tmp_path / "m.tif"
    code, _, err = prep("palette", tmp_path / "m.png", "--palette", palette, "--out", out)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("data_prep: error: "), err
    assert says in err, err
    assert not out.exists()
