"""Bad or unusual inputs to `seg tile`: one clear line, exit 1, nothing half-written; and the
input forms that must work (label rasters on other grids, vector files, GCP rasters in pixel space).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import synthetic_pair, write_geotiff
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin

from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


def refused(seg_run: Run, out: Path, *args: object) -> str:
    code, _, err = seg_run("tile", *args, "--out", out, "-q")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seg: error: "), err
    assert not out.exists()  # nothing written
    return lines[0]


def test_not_a_raster_and_missing_files(tmp_path: Path, make_scene, seg_run: Run) -> None:
    good, _ = make_scene("good", 64, 64)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    out = tmp_path / "x.zarr"
    assert "broken.tif is not a raster" in refused(seg_run, out, good, bad, "--size", "64")
    assert "does not exist" in refused(seg_run, out, tmp_path / "nope.tif")
    assert "matches no file" in refused(seg_run, out, f"{tmp_path}/*.jp2")


def test_complex_sar_refused(tmp_path: Path, seg_run: Run) -> None:
    sar = write_geotiff(tmp_path / "sar.tif", (np.ones((32, 32)) + 1j).astype(np.complex64))
    assert "complex" in refused(seg_run, tmp_path / "x.zarr", sar, "--size", "32")


def test_gcp_only_refused_unless_pixel_space(tmp_path: Path, seg_run: Run) -> None:
    path = tmp_path / "gcps.tif"
    gcps = [
        GroundControlPoint(0, 0, 10.0, 50.0),
        GroundControlPoint(0, 63, 10.1, 50.0),
        GroundControlPoint(63, 0, 10.0, 49.9),
    ]
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16"
    ) as dst:
        dst.write(np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
        dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    line = refused(seg_run, tmp_path / "x.zarr", path, "--size", "32")
    assert "ground control points" in line and "--pixel-space" in line
    code, _, err = seg_run(
        "tile", path, "--out", tmp_path / "p.zarr", "--size", "32", "--pixel-space", "-q"
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "p.zarr")).scenes()
    assert s.attrs.pixel_space and s.attrs.crs is None and len(s) == 4


def write_picture(path: Path, data: np.ndarray) -> Path:
    """A PNG / JPEG (by suffix) without georeference, as many public aerial sets ship."""
    if data.ndim == 2:
        data = data[None]
    driver = "PNG" if path.suffix == ".png" else "JPEG"
    count, height, width = data.shape
    with rasterio.open(path, "w", driver=driver, width=width, height=height, count=count,
                       dtype="uint8") as dst:  # fmt: skip
        dst.write(data)
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_folders_of_pictures_in_pixel_space(tmp_path: Path, seg_run: Run) -> None:
    """JPEG scenes and PNG labels given as folders; a GeoTIFF folder's browse pictures are not
    taken as scenes."""
    scenes, labels = tmp_path / "images", tmp_path / "masks"
    scenes.mkdir()
    labels.mkdir()
    for i, (h, w) in enumerate([(70, 90), (64, 100)]):
        image, mask = synthetic_pair(h, w, 3, i)
        write_picture(scenes / f"part_{i}.jpg", image)
        write_picture(labels / f"part_{i}.png", mask.astype(np.uint8))
    out = tmp_path / "p.zarr"
    code, _, err = seg_run(
        "tile", scenes, "--labels", labels, "--out", out, "--size", "32", "--pixel-space", "-q"
    )
    assert code == 0 and err.strip() == "", err
    found = WindowStore.open(str(out)).scenes()
    assert sorted(Path(s.attrs.source).name for s in found) == ["part_0.jpg", "part_1.jpg"]
    assert all(s.attrs.labels and s.attrs.labels.endswith(".png") for s in found)
    assert all(s.attrs.pixel_space for s in found)

    geo = tmp_path / "geo"
    geo.mkdir()
    image, _ = synthetic_pair(64, 64, 3, 0)
    write_geotiff(geo / "scene.tif", image)
    write_picture(geo / "scene.jpg", image)  # its browse image
    code, _, err = seg_run("tile", geo, "--out", tmp_path / "g.zarr", "--size", "32", "-q")
    assert code == 0, err
    (only,) = WindowStore.open(str(tmp_path / "g.zarr")).scenes()
    assert only.attrs.source.endswith("scene.tif")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--size", "100"], "multiple of 32"),
        (["--size", "64", "--stride", "0"], "must be positive"),
        (["--size", "64", "--stride", "96"], "gaps"),
        (["--size", "64", "--bands", "4"], "band(s) [4] do not exist"),
        (["--size", "64", "--shard-index", "2", "--shard-count", "2"], "shard-index"),
    ],
)
def test_bad_settings(
    tmp_path: Path, make_scene, seg_run: Run, flags: list[str], needle: str
) -> None:
    scene, _ = make_scene("s", 64, 64)
    assert needle in refused(seg_run, tmp_path / "x.zarr", scene, *flags)


def test_gaps_allowed_when_asked(tmp_path: Path, make_scene, seg_run: Run) -> None:
    scene, _ = make_scene("s", 200, 200)
    code, out, err = seg_run(
        "tile",
        scene,
        "--out",
        tmp_path / "g.zarr",
        "--size",
        "32",
        "--stride",
        "64",
        "--allow-gaps",
        "-q",
    )
    assert code == 0 and "16 windows" in out, err


def test_label_raster_on_another_grid(tmp_path: Path, seg_run: Run) -> None:
    image, mask = synthetic_pair(96, 96, seed=4)
    scene = write_geotiff(tmp_path / "u.tif", image)  # EPSG:32633, 0.5 m
    # The same labels at 0.25 m in a bigger, offset extent: resampled (nearest) onto the scene grid.
    fine = np.zeros((240, 240), np.uint8)
    fine[20:212, 20:212] = np.kron(mask, np.ones((2, 2), np.uint8))
    label = write_geotiff(
        tmp_path / "u_mask.tif", fine, transform=from_origin(500000 - 5, 4000000 + 5, 0.25, 0.25)
    )
    code, _, err = seg_run(
        "tile", scene, "--labels", label, "--out", tmp_path / "o.zarr", "--size", "96", "-q"
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "o.zarr")).scenes()
    np.testing.assert_array_equal(s.mask[0], mask)
    # Different size and no georeference on the label: no unambiguous alignment.
    bare = tmp_path / "bare_mask.tif"
    with rasterio.open(
        bare, "w", driver="GTiff", width=50, height=50, count=1, dtype="uint8"
    ) as dst:
        dst.write(np.zeros((1, 50, 50), np.uint8))
    assert "unambiguous" in refused(
        seg_run, tmp_path / "y.zarr", scene, "--labels", bare, "--size", "96"
    )
    # Same size, no georeference: taken pixel for pixel.
    with rasterio.open(
        bare, "w", driver="GTiff", width=96, height=96, count=1, dtype="uint8"
    ) as dst:
        dst.write(mask[None])
    code, _, err = seg_run(
        "tile", scene, "--labels", bare, "--out", tmp_path / "z.zarr", "--size", "96", "-q"
    )
    assert code == 0, err
    np.testing.assert_array_equal(
        WindowStore.open(str(tmp_path / "z.zarr")).scenes()[0].mask[0], mask
    )


def test_label_values_that_do_not_fit_leave_no_scene(
    tmp_path: Path, make_scene, seg_run: Run
) -> None:
    scene, _ = make_scene("v", 64, 64)
    label = write_geotiff(tmp_path / "v_mask.tif", np.full((64, 64), 300, np.uint16))
    out = tmp_path / "v.zarr"
    code, _, err = seg_run("tile", scene, "--labels", label, "--out", out, "--size", "64", "-q")
    assert code == 1 and "outside 0..255" in err
    assert not out.exists()  # the store this run created is removed again
    # Added to an existing store, the failed scene leaves no trace and the others stay.
    good, _ = make_scene("ok", 64, 64)
    assert seg_run("tile", good, "--out", out, "--size", "64", "-q")[0] == 0
    code, _, err = seg_run("tile", scene, "--labels", label, "--out", out, "--size", "64", "-q")
    assert (
        code == 1 and WindowStore.open(str(out)).scene_ids() == ["ok"] and not (out / "v").exists()
    )


def _geojson(path: Path, features: list[dict], crs: str | None = None) -> Path:
    doc: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def _box(x0: float, y0: float, x1: float, y1: float, **props: object) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def test_vector_labels_with_crs_member_class_attribute_and_gpkg(
    tmp_path: Path, make_scene, seg_run: Run
) -> None:
    scene, _ = make_scene("w", 64, 64)  # EPSG:32633, origin (500000, 4000000), 0.5 m
    feats = [
        _box(500000, 3999984, 500016, 4000000, kind="building"),  # rows 0-31, cols 0-31
        _box(500016, 3999968, 500032, 3999984, kind="road"),  # rows 32-63, cols 32-63
    ]
    gj = _geojson(tmp_path / "l.geojson", feats, crs="urn:ogc:def:crs:EPSG::32633")
    out = tmp_path / "l.zarr"
    code, _, err = seg_run(
        "tile",
        scene,
        "--labels",
        gj,
        "--out",
        out,
        "--size",
        "64",
        "--label-attr",
        "kind",
        "--set",
        "classes=[background, building, road]",
        "-q",
    )
    assert code == 0, err
    m = WindowStore.open(str(out)).scenes()[0].mask[0]
    assert (m[:32, :32] == 1).all() and (m[32:, 32:] == 2).all() and (m[:32, 32:] == 0).all()
    # The same features in a GeoPackage give the same mask.
    import shapely
    from pyogrio.raw import write

    geoms = np.array(
        [shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in feats], dtype=object
    )
    gpkg = tmp_path / "l.gpkg"
    write(
        gpkg,
        geoms,
        field_data=[np.array([1, 2])],
        fields=["cls"],
        geometry_type="Polygon",
        crs="EPSG:32633",
    )
    out2 = tmp_path / "g.zarr"
    code, _, err = seg_run(
        "tile",
        scene,
        "--labels",
        gpkg,
        "--out",
        out2,
        "--size",
        "64",
        "--label-attr",
        "cls",
        "--set",
        "classes=[background, building, road]",
        "-q",
    )  # (id 2 with the default two classes is refused: tests/test_cli_errors.py)
    assert code == 0, err
    np.testing.assert_array_equal(WindowStore.open(str(out2)).scenes()[0].mask[0], m)
    # An attribute value that is neither an id nor a class name is refused.
    line = refused(
        seg_run, tmp_path / "n.zarr", scene, "--labels", gj, "--label-attr", "kind", "--size", "64"
    )
    assert "'road'" in line and "classes" in line


def test_vector_without_crs_and_outside_the_scene(tmp_path: Path, make_scene, seg_run: Run) -> None:
    scene, _ = make_scene("w", 64, 64)
    projected = _geojson(tmp_path / "p.geojson", [_box(500000, 3999984, 500016, 4000000)])
    line = refused(seg_run, tmp_path / "x.zarr", scene, "--labels", projected, "--size", "64")
    assert "--label-crs" in line and "RFC 7946" in line
    code, _, err = seg_run(
        "tile",
        scene,
        "--labels",
        projected,
        "--label-crs",
        "scene",
        "--out",
        tmp_path / "s.zarr",
        "--size",
        "64",
        "-q",
    )
    assert code == 0, err
    assert (WindowStore.open(str(tmp_path / "s.zarr")).scenes()[0].mask[0][:32, :32] == 1).all()
    # RFC 7946 lon/lat far away: a warning and an all-background mask, not an error.
    far = _geojson(tmp_path / "far.geojson", [_box(100.0, 10.0, 100.1, 10.1)])
    code, _, err = seg_run(
        "tile", scene, "--labels", far, "--out", tmp_path / "f.zarr", "--size", "64", "-q"
    )
    assert code == 0 and "no label geometry" in err
    assert (WindowStore.open(str(tmp_path / "f.zarr")).scenes()[0].mask[:] == 0).all()


def test_label_matching_by_name(tmp_path: Path) -> None:
    from seg.errors import InputError
    from seg.geo.labels import match_labels

    scenes = ["/s/city_image.tif", "/s/a.tif", "/s/a_2.tif"]
    files = ["/l/city_buildings_mask.tif", "/l/a_mask.tif", "/l/a_2_mask.tif", "/l/a.tif"]
    kept, pairs = match_labels(scenes, files)
    assert pairs == {
        "/s/city_image.tif": "/l/city_buildings_mask.tif",
        "/s/a.tif": "/l/a.tif",
        "/s/a_2.tif": "/l/a_2_mask.tif",
    }
    # Scenes and labels in one folder: the label files are not scenes.
    same = ["/d/x_image.tif", "/d/x_mask.tif", "/d/y.tif", "/d/y_label.tif"]
    kept, pairs = match_labels(same, same)
    assert kept == ["/d/x_image.tif", "/d/y.tif"] and pairs["/d/y.tif"] == "/d/y_label.tif"
    with pytest.raises(InputError, match="several label rasters"):
        match_labels(["/s/b.tif"], ["/l/b_one.tif", "/l/b_two.tif"])
    assert match_labels(["/s/b.tif"], ["/l/b_one.tif", "/l/b_two.tif"], {"b": "/l/b_two.tif"})[
        1
    ] == {"/s/b.tif": "/l/b_two.tif"}
    with pytest.raises(InputError, match="no label raster"):
        match_labels(["/s/c.tif"], ["/l/d_mask.tif"])


def test_label_raster_in_another_crs_is_reprojected(tmp_path: Path, seg_run: Run) -> None:
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    image, mask = synthetic_pair(128, 128, seed=5)
    scene = write_geotiff(tmp_path / "c.tif", image)  # EPSG:32633
    src_t = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    dst_t, w, h = calculate_default_transform(
        "EPSG:32633",
        "EPSG:4326",
        128,
        128,
        500000.0,
        3999936.0,
        500064.0,
        4000000.0,
        resolution=(1e-6, 1e-6),
    )
    lonlat = np.zeros((h, w), np.uint8)
    reproject(
        mask,
        lonlat,
        src_transform=src_t,
        src_crs="EPSG:32633",
        dst_transform=dst_t,
        dst_crs="EPSG:4326",
        resampling=Resampling.nearest,
    )
    label = write_geotiff(tmp_path / "c_mask.tif", lonlat, crs="EPSG:4326", transform=dst_t)
    code, _, err = seg_run(
        "tile", scene, "--labels", label, "--out", tmp_path / "c.zarr", "--size", "128", "-q"
    )
    assert code == 0, err
    got = WindowStore.open(str(tmp_path / "c.zarr")).scenes()[0].mask[0]
    assert (got == mask).mean() > 0.97, (
        got == mask
    ).mean()  # two nearest resamplings: edges differ
    assert (got == 1).sum() > 0.9 * (mask == 1).sum()
