"""`seg eval` through the real CLI: metrics on known masks, vector truth, seams, bad truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import synthetic_pair, write_geotiff
from PIL import Image

Run = Callable[..., tuple[int, str, str]]
T = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)


def write_mask(path: Path, classes: np.ndarray, window: dict[str, int] | None = None) -> Path:
    """A mask as `seg predict` writes it: uint8 ids, 255 = no data, class names in a tag."""
    profile = {
        "driver": "GTiff",
        "width": classes.shape[1],
        "height": classes.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": T,
        "nodata": 255,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes, 1)
        tags = {"SEG_CLASSES": json.dumps(["background", "building"])}
        if window:
            tags["SEG_WINDOW"] = json.dumps(window)
        dst.update_tags(**tags)
    return path


def test_known_counts_report_and_overlay(seg_run: Run, tmp_path: Path) -> None:
    truth = np.zeros((60, 80), np.uint8)
    truth[10:30, 10:30] = 1  # 400 building pixels
    pred = truth.copy()
    pred[10:20, 10:30] = 0  # 200 missed
    pred[40:50, 40:50] = 1  # 100 false alarms
    pred[0, :5] = 255  # 5 pixels not predicted
    image, _ = synthetic_pair(60, 80, 3, 0)
    img = write_geotiff(tmp_path / "scene.tif", image, transform=T)
    write_mask(tmp_path / "pred.tif", pred)
    write_geotiff(tmp_path / "truth.tif", truth, transform=T)
    out = tmp_path / "report"
    code, stdout, err = seg_run(
        "eval", tmp_path / "pred.tif", tmp_path / "truth.tif", "--out", out, "--image", img
    )
    assert code == 0, err
    assert "| building | 0.4000 |" in stdout  # 200 / (200 TP + 100 FP + 200 FN)
    data = json.loads((out / "report.json").read_text())
    b = data["per_class"]["building"]
    assert b["iou"] == pytest.approx(200 / 500)
    assert b["precision"] == pytest.approx(200 / 300) and b["recall"] == pytest.approx(0.5)
    assert b["f1"] == pytest.approx(2 * 200 / (2 * 200 + 300))
    assert data["confusion_matrix"] == [[60 * 80 - 400 - 5 - 100, 100], [200, 200]]
    assert data["unpredicted_pixels"] == 5
    assert data["miou"] == pytest.approx((b["iou"] + data["per_class"]["background"]["iou"]) / 2)
    assert data["seams"] is None  # no window geometry known
    assert "mean IoU" in (out / "report.md").read_text()
    png = Image.open(out / "overlay.png")
    assert png.width > 3 * png.height * 80 / 60 * 0.9  # three panels side by side


def test_vector_truth_equals_raster_truth(seg_run: Run, tmp_path: Path) -> None:
    truth = np.zeros((60, 80), np.uint8)
    truth[10:30, 20:36] = 1
    pred = np.zeros_like(truth)
    pred[12:30, 20:40] = 1
    write_mask(tmp_path / "pred.tif", pred)
    write_geotiff(tmp_path / "truth.tif", truth, transform=T)
    x0, y0 = T @ (20, 10)
    x1, y1 = T @ (36, 30)
    square = [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": square},
            }
        ],
    }
    (tmp_path / "truth.geojson").write_text(json.dumps(doc))
    code, _, err = seg_run(
        "eval", tmp_path / "pred.tif", tmp_path / "truth.tif", "-o", tmp_path / "r"
    )
    assert code == 0, err
    code, _, err = seg_run(
        "eval", tmp_path / "pred.tif", tmp_path / "truth.geojson", "-o", tmp_path / "v"
    )
    assert code == 0, err
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    v = json.loads((tmp_path / "v" / "report.json").read_text())
    assert r["confusion_matrix"] == v["confusion_matrix"]
    assert (tmp_path / "v" / "overlay.png").exists()


def test_seams_show_up_in_the_border_band(seg_run: Run, tmp_path: Path) -> None:
    truth, _ = synthetic_pair(128, 128, 1, 3)
    truth = (truth[0] > 100).astype(np.uint8)
    pred = truth.copy()
    # A seamy stitcher: wrong along the internal window borders at 48 and 64 (size 64, stride 48).
    for e in (48, 64):
        pred[e - 2 : e + 2, :] = 1 - pred[e - 2 : e + 2, :]
        pred[:, e - 2 : e + 2] = 1 - pred[:, e - 2 : e + 2]
    write_mask(tmp_path / "pred.tif", pred, window={"size": 64, "overlap": 16})
    write_geotiff(tmp_path / "truth.tif", truth, transform=T)
    code, stdout, err = seg_run(
        "eval", tmp_path / "pred.tif", tmp_path / "truth.tif", "--border", "4"
    )
    assert code == 0, err
    seams = json.loads((tmp_path / "pred_eval" / "report.json").read_text())["seams"]
    assert (seams["window_size"], seams["stride"], seams["band"]) == (64, 48, 4)
    assert seams["interior_miou"] == pytest.approx(1.0)
    assert seams["border_miou"] < 0.7
    assert "seams:" in stdout
    # The same masks with the flags overriding the tags: a band that misses the seams.
    code, _, _ = seg_run(
        "eval",
        tmp_path / "pred.tif",
        tmp_path / "truth.tif",
        "--window-size",
        "32",
        "--overlap",
        "0",
        "--border",
        "1",
        "-o",
        tmp_path / "flags",
    )
    flags = json.loads((tmp_path / "flags" / "report.json").read_text())["seams"]
    assert (flags["window_size"], flags["stride"]) == (32, 32)
    assert flags["interior_miou"] < 1.0


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("size", "size 80x61"),
        ("shift", "transform"),
        ("crs", "CRS"),
        ("missing", "does not exist"),
        ("not_a_mask", "not a class mask"),
    ],
)
def test_misaligned_truth_is_refused(seg_run: Run, tmp_path: Path, kind: str, message: str) -> None:
    pred_path = write_mask(tmp_path / "pred.tif", np.zeros((60, 80), np.uint8))
    truth = np.zeros((60, 80), np.uint8)
    tpath = tmp_path / "truth.tif"
    if kind == "size":
        write_geotiff(tpath, np.zeros((61, 80), np.uint8), transform=T)
    elif kind == "shift":
        write_geotiff(tpath, truth, transform=Affine(0.5, 0, 500003.0, 0, -0.5, 4000000.0))
    elif kind == "crs":
        write_geotiff(tpath, truth, transform=T, crs="EPSG:32634")
    elif kind == "not_a_mask":
        write_geotiff(tpath, truth, transform=T)
        pred_path = write_geotiff(
            tmp_path / "rgb.tif", np.zeros((3, 60, 80), np.uint8), transform=T
        )
    code, _, err = seg_run("eval", pred_path, tpath, "-o", tmp_path / "out")
    assert code == 1 and err.startswith("seg: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
