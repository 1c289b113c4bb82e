"""The map pages of `seg ui` without a browser: a scene predicted by the real `seg predict` and
scored by `seg eval`, its masks listed, its tiles cut by rio-tiler (class colours, transparent
no data, the scene only from inside the served folders), the eval report beside the map."""

from __future__ import annotations

import io
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from conftest import make_checkpoint
from PIL import Image
from rasterio.warp import transform as warp
from starlette.testclient import TestClient

from seg.classes import colour
from seg.ui.app import create_app
from seg.ui.roots import Roots, inside

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def predicted(tmp_path: Path, make_scene, seg_run) -> Path:
    """scenes/ (a 300x270 UTM scene and its truth), preds/ (mask, probabilities, eval report)."""
    scene, truth = make_scene("scene", folder=tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "model.pt")
    code, _, err = seg_run("predict", scene, "-k", ckpt, "--out", tmp_path / "preds",
                           "--probabilities", "--precision", "fp32", "-q")  # fmt: skip
    assert code == 0, err
    mask = tmp_path / "preds" / "scene_mask.tif"
    code, _, err = seg_run("eval", mask, truth)
    assert code == 0, err
    assert (tmp_path / "preds" / "scene_mask_eval" / "report.json").exists()
    return tmp_path


def client(tmp: Path, *, scenes: bool = True) -> TestClient:
    runs = tmp / "runs"
    runs.mkdir(exist_ok=True)
    roots = Roots(str(runs), predictions=str(tmp / "preds"),
                  scenes=str(tmp / "scenes") if scenes else None)  # fmt: skip
    return TestClient(create_app(roots))


def centre_tile(mask: Path) -> morecantile.Tile:
    with rasterio.open(mask) as ds:
        x, y = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        lon, lat = warp(ds.crs, "EPSG:4326", [x], [y])
    return TMS.tile(lon[0], lat[0], 18)  # ~0.6 m pixels: the scene's own 0.5 m resolution


def rgba(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (256, 256) and image.mode == "RGBA"
    return np.asarray(image)


def test_masks_are_listed_and_the_map_page_has_the_report(predicted: Path) -> None:
    c = client(predicted)
    listing = c.get("/maps")
    assert listing.status_code == 200 and 'href="/map/scene_mask.tif"' in listing.text
    page = c.get("/map/scene_mask.tif")
    assert page.status_code == 200, page.text
    import json

    report = json.loads((predicted / "preds/scene_mask_eval/report.json").read_text())
    assert f"{report['miou']:.4f}" in page.text and "Confusion matrix" in page.text
    assert "/static/vendor/leaflet/leaflet.js" in page.text
    assert 'id="scene-note"' not in page.text  # the scene is inside --scenes: served
    assert 'id="prob-class"' in page.text  # probabilities were written


def test_mask_tiles_are_the_class_colours_and_no_data_is_transparent(predicted: Path) -> None:
    c = client(predicted)
    t = centre_tile(predicted / "preds" / "scene_mask.tif")
    tile = rgba(c.get(f"/tiles/mask/{t.z}/{t.x}/{t.y}/scene_mask.tif"))
    opaque = tile[..., 3] == 255
    assert opaque.any()
    allowed = {colour(0), colour(1)}
    assert {tuple(int(v) for v in p) for p in tile[opaque][:, :3]} <= allowed
    assert set(np.unique(tile[..., 3])) <= {0, 255}
    # a tile at the scene's edge shows the scene's pixels and transparency beyond it
    with rasterio.open(predicted / "preds" / "scene_mask.tif") as ds:
        lon, lat = warp(ds.crs, "EPSG:4326", [ds.bounds.left], [ds.bounds.top])
    edge = TMS.tile(lon[0], lat[0], 18)
    corner = rgba(c.get(f"/tiles/mask/{edge.z}/{edge.x}/{edge.y}/scene_mask.tif"))
    assert (corner[..., 3] == 0).any() and (corner[..., 3] == 255).any()
    # far away: no pixel, no image
    assert c.get(f"/tiles/mask/18/{t.x + 50}/{t.y}/scene_mask.tif").status_code == 204


def test_scene_and_probability_tiles(predicted: Path) -> None:
    c = client(predicted)
    t = centre_tile(predicted / "preds" / "scene_mask.tif")
    scene = rgba(c.get(f"/tiles/scene/{t.z}/{t.x}/{t.y}/scene_mask.tif"))
    assert (scene[..., 3] == 255).mean() > 0.5 and scene[..., :3].std() > 10
    prob = rgba(c.get(f"/tiles/probability/{t.z}/{t.x}/{t.y}/scene_mask.tif?band=2"))
    assert prob[..., 3].max() > 0
    bad = c.get(f"/tiles/probability/{t.z}/{t.x}/{t.y}/scene_mask.tif?band=9")
    assert bad.status_code == 400 and "not band 9" in bad.text
    wrong = c.get(f"/tiles/nothing/{t.z}/{t.x}/{t.y}/scene_mask.tif")
    assert wrong.status_code == 400 and "choose one of" in wrong.text


def test_a_scene_outside_the_served_folders_is_not_served(predicted: Path) -> None:
    c = client(predicted, scenes=False)
    page = c.get("/map/scene_mask.tif")
    assert page.status_code == 200 and "outside the folders seg ui serves" in page.text
    t = centre_tile(predicted / "preds" / "scene_mask.tif")
    refused = c.get(f"/tiles/scene/{t.z}/{t.x}/{t.y}/scene_mask.tif")
    assert refused.status_code == 404 and "no scene layer" in refused.text
    # the mask itself is still served
    assert c.get(f"/tiles/mask/{t.z}/{t.x}/{t.y}/scene_mask.tif").status_code == 200


def test_map_paths_are_confined(predicted: Path, tmp_path: Path) -> None:
    c = client(predicted)
    (tmp_path / "preds" / "link_mask.tif").symlink_to(tmp_path / "scenes" / "scene_mask.tif")
    for name in ("../scenes/scene_mask.tif", "link_mask.tif", "missing_mask.tif"):
        assert c.get(f"/map/{name}").status_code == 404, name
        assert c.get(f"/tiles/mask/18/1/1/{name}").status_code == 404, name
    nomaps = TestClient(create_app(Roots(str(tmp_path / "runs"))))
    assert "--predictions" in nomaps.get("/maps").text
    assert nomaps.get("/map/scene_mask.tif").status_code == 404
    assert inside("/a/b", "/a/b/c.tif") and not inside("/a/b", "/a/bc.tif")
    assert inside("gs://x/scenes", "gs://x/scenes/s.tif") and not inside("gs://x/s", "/x/s/t")


def test_a_mask_without_a_georeference_says_so(predicted: Path) -> None:
    from conftest import write_geotiff

    write_geotiff(predicted / "preds" / "flat_mask.tif", np.zeros((64, 64), np.uint8), crs=None)
    page = client(predicted).get("/map/flat_mask.tif")
    assert page.status_code == 400 and "no georeference" in page.text


def test_predictions_on_gcs_are_listed_mapped_and_tiled(
    tmp_path: Path, make_scene, seg_run, gcs_bucket: str
) -> None:
    scene, _ = make_scene("scene", folder=tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "model.pt")
    preds = f"{gcs_bucket}/maps-test/preds"
    code, _, err = seg_run("predict", scene, "-k", ckpt, "--out", preds, "--precision", "fp32",
                           "-q")  # fmt: skip
    assert code == 0, err
    (tmp_path / "runs").mkdir()
    c = TestClient(create_app(Roots(str(tmp_path / "runs"), predictions=preds,
                                    scenes=str(tmp_path / "scenes"))))  # fmt: skip
    assert 'href="/map/scene_mask.tif"' in c.get("/maps").text
    page = c.get("/map/scene_mask.tif")
    assert page.status_code == 200 and 'id="scene-note"' not in page.text, page.text
    t = centre_tile(tmp_path / "scenes" / "scene.tif")
    mask = rgba(c.get(f"/tiles/mask/{t.z}/{t.x}/{t.y}/scene_mask.tif"))
    assert (mask[..., 3] == 255).any()
    assert (rgba(c.get(f"/tiles/scene/{t.z}/{t.x}/{t.y}/scene_mask.tif"))[..., 3] == 255).any()
