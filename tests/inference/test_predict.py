"""`seg predict` end to end through the real CLI: tiny synthetic scenes, tiny untrained model."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff
from rasterio.errors import NotGeoreferencedWarning

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


def scene(path: Path, h: int = 150, w: int = 131, bands: int = 3, seed: int = 0, **kw: Any) -> Path:
    image, _ = synthetic_pair(h, w, bands, seed)
    return write_geotiff(path, image, **kw)


def test_one_scene_on_the_input_grid_with_nodata_probs_and_polygons(
    seg_run: Run, ckpt: Path, tmp_path: Path
) -> None:
    image, _ = synthetic_pair(150, 131, 3, 1)
    image[:, :20, :30] = 0  # a no-data corner
    image[:, 140:, 100:] = 0
    transform = Affine(0.5, 0.0, 500123.0, 0.0, -0.5, 4000321.0)
    src = write_geotiff(tmp_path / "scene.tif", image, nodata=0, transform=transform)
    out = tmp_path / "out" / "scene_mask.tif"
    vec = tmp_path / "out" / "polys.geojson"
    code, stdout, err = seg_run(
        "predict", src, "-k", ckpt, "--out", out, "--probabilities", "--vector", vec, "-q"
    )
    assert code == 0, err
    assert "1 predicted" in stdout
    with rasterio.open(src) as s, rasterio.open(out) as m:
        assert (m.width, m.height, m.crs, m.transform) == (s.width, s.height, s.crs, s.transform)
        assert m.dtypes == ("uint8",) and m.nodata == 255
        assert m.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and m.profile["tiled"]
        assert json.loads(m.tags()["SEG_CLASSES"]) == ["background", "building"]
        mask = m.read(1)
        nodata = s.dataset_mask() == 0
    assert nodata.sum() == 20 * 30 + 10 * 31
    np.testing.assert_array_equal(mask == 255, nodata)
    assert set(np.unique(mask[~nodata])) <= {0, 1}

    probs_path = tmp_path / "out" / "scene_mask_probs.tif"
    with rasterio.open(probs_path) as p:
        assert p.count == 2 and p.dtypes[0] == "uint8" and p.nodata == 255
        assert p.descriptions == ("background", "building")
        probs = p.read()
    valid = ~nodata
    assert (probs[:, nodata] == 255).all()
    total = probs[:, valid].astype(int).sum(axis=0)
    assert np.abs(total - 254).max() <= 1  # scaled by 254, rounded per band
    decided = np.abs(probs[0].astype(int) - probs[1].astype(int)) > 1
    np.testing.assert_array_equal(probs.argmax(axis=0)[valid & decided], mask[valid & decided])

    doc = json.loads(vec.read_text())
    assert "32633" in doc["crs"]["properties"]["name"]
    areas = {0: 0.0, 1: 0.0}
    for f in doc["features"]:
        areas[f["properties"]["class_id"]] += f["properties"]["area"]
    for k in (0, 1):  # polygons cover each class's pixels exactly (0.25 m² per pixel)
        assert areas[k] == pytest.approx((mask == k).sum() * 0.25)


def test_float16_probabilities_and_gpkg(seg_run: Run, ckpt: Path, tmp_path: Path) -> None:
    src = scene(tmp_path / "a.tif", 70, 90)
    out = tmp_path / "o"
    code, _, err = seg_run(
        "predict",
        src,
        "-k",
        ckpt,
        "--out",
        out,
        "--probabilities",
        "--prob-dtype",
        "float16",
        "--vector",
        "gpkg",
        "--tta",
        "-q",
    )
    assert code == 0, err
    with rasterio.open(out / "a_mask_probs.tif") as p:
        assert p.dtypes[0] == "float32" and p.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "16"
        np.testing.assert_allclose(p.read().sum(axis=0), 1.0, atol=2e-3)
    import pyogrio

    info = pyogrio.read_info(out / "a_mask.gpkg")
    assert info["features"] > 0 and "32633" in info["crs"]


def test_test_time_augmentation_is_the_default(seg_run: Run, ckpt: Path, tmp_path: Path) -> None:
    src = scene(tmp_path / "a.tif", 70, 90)
    probs = {}
    for name, flags in {"default": [], "tta": ["--tta"], "plain": ["--no-tta"]}.items():
        out = tmp_path / name
        code, _, err = seg_run(
            "predict", src, "-k", ckpt, "--out", out, "--probabilities", "-q", *flags
        )
        assert code == 0, err
        with rasterio.open(out / "a_mask_probs.tif") as p:
            probs[name] = p.read()
    np.testing.assert_array_equal(probs["default"], probs["tta"])
    assert not np.array_equal(
        probs["default"], probs["plain"]
    )  # a random net is not flip-invariant


def test_window_size_runs_the_network_on_larger_windows(
    seg_run: Run, ckpt: Path, tmp_path: Path
) -> None:
    """--window-size: windows a multiple of the training window (64), the mask on the scene's
    grid either way; a scene smaller than the window is one window of the smallest multiple of
    64 that covers it; a size that is no multiple, or one given with --store, is one line."""
    src = scene(tmp_path / "a.tif", 150, 300, seed=3)
    probs, tags = {}, {}
    for w in ("64", "128", "512"):
        out = tmp_path / w / "a_mask.tif"
        code, _, err = seg_run(
            "predict", src, "-k", ckpt, "--out", out, "--window-size", w, "--probabilities",
            "--precision", "fp32", "-q",
        )  # fmt: skip
        assert code == 0, err
        with rasterio.open(src) as s, rasterio.open(out) as m:
            assert (m.width, m.height, m.transform) == (s.width, s.height, s.transform)
            tags[w] = json.loads(m.tags()["SEG_WINDOW"])
        with rasterio.open(out.with_name("a_mask_probs.tif")) as p:
            probs[w] = p.read().astype(int)
    assert tags == {
        "64": {"size": 64, "overlap": 16},
        "128": {"size": 128, "overlap": 32},
        "512": {"size": 320, "overlap": 80},  # 300 px wide: one 5 x 64 px window
    }
    default = tmp_path / "default.tif"
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", default, "--precision", "fp32")
    assert code == 0, err
    with rasterio.open(default) as m:
        assert json.loads(m.tags()["SEG_WINDOW"])["size"] == 64
    # An untrained network sees other context in other windows: other probabilities.
    assert np.abs(probs["64"] - probs["128"]).max() > 0
    assert np.abs(probs["128"] - probs["512"]).max() > 0
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", tmp_path / "x.tif",
                           "--window-size", "100", "-q")  # fmt: skip
    assert one_line_error(code, err) and "multiple of the training window (64)" in err, err
    assert not (tmp_path / "x.tif").exists()
    code, _, err = seg_run("predict", "--store", tmp_path / "ds.zarr", "-k", ckpt, "--out",
                           tmp_path / "p.zarr", "--window-size", "128", "-q")  # fmt: skip
    assert one_line_error(code, err) and "--window-size applies to scenes" in err, err


def test_many_scenes_sharding_skip_and_overwrite(
    seg_run: Run, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(3):
        scene(folder / f"s{i}.tif", 40 + i, 50, seed=i)
    out = tmp_path / "masks"
    code, stdout, err = seg_run(
        "predict",
        folder,
        "-k",
        ckpt,
        "--out",
        out,
        "--shard-index",
        "0",
        "--shard-count",
        "2",
        "-q",
    )
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["s0_mask.tif", "s2_mask.tif"]
    monkeypatch.setenv("BATCH_TASK_INDEX", "1")
    monkeypatch.setenv("BATCH_TASK_COUNT", "2")
    code, _, err = seg_run("predict", str(folder / "*.tif"), "-k", ckpt, "--out", out, "-q")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["s0_mask.tif", "s1_mask.tif", "s2_mask.tif"]
    monkeypatch.delenv("BATCH_TASK_INDEX")
    monkeypatch.delenv("BATCH_TASK_COUNT")
    before = (out / "s1_mask.tif").stat().st_mtime_ns
    code, stdout, _ = seg_run("predict", folder, "-k", ckpt, "--out", out, "-q")
    assert code == 0 and "0 predicted, 3 skipped" in stdout
    assert (out / "s1_mask.tif").stat().st_mtime_ns == before
    code, stdout, _ = seg_run("predict", folder, "-k", ckpt, "--out", out, "--overwrite", "-q")
    assert code == 0 and "3 predicted" in stdout
    assert (out / "s1_mask.tif").stat().st_mtime_ns != before
    # One file as --out for many scenes is refused.
    code, _, err = seg_run("predict", folder, "-k", ckpt, "--out", tmp_path / "x.tif", "-q")
    assert code == 1 and "is a file but 3 scenes" in err


def test_gcs_input_and_output(seg_run: Run, ckpt: Path, tmp_path: Path, gcs_bucket: str) -> None:
    from seg import fs as segfs
    from seg.geo.raster import open_raster

    src = scene(tmp_path / "remote.tif", 60, 70, seed=5)
    fs, _ = segfs.filesystem(gcs_bucket)
    fs.put_file(str(src), f"{gcs_bucket}/predict-in/remote.tif".removeprefix("gs://"))
    out = f"{gcs_bucket}/predict-out"
    code, _, err = seg_run("predict", f"{gcs_bucket}/predict-in/", "-k", ckpt, "--out", out, "-q")
    assert code == 0, err
    with open_raster(f"{out}/remote_mask.tif") as m, rasterio.open(src) as s:
        assert (m.width, m.height, m.crs, m.transform) == (s.width, s.height, s.crs, s.transform)
        assert set(np.unique(m.read(1))) <= {0, 1}
    remote = f"{gcs_bucket}/predict-in/remote.tif"
    code, stdout, _ = seg_run("predict", remote, "-k", ckpt, "--out", out, "-q")
    assert code == 0 and "1 skipped" in stdout
    code, _, err = seg_run("predict", remote, "-k", ckpt, "-o", "gs://no-such-bucket-x/m", "-q")
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_pixel_space_needs_the_flag(seg_run: Run, ckpt: Path, tmp_path: Path) -> None:
    image, _ = synthetic_pair(50, 60, 3, 2)
    src = write_geotiff(tmp_path / "raw.tif", image, crs=None, transform=Affine.identity())
    out = tmp_path / "raw_mask.tif"
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", out, "-q")
    assert code == 1 and "--pixel-space" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", out, "--pixel-space", "-q")
    assert code == 0, err
    with rasterio.open(out) as m:
        assert m.crs is None and (m.width, m.height) == (60, 50)


def test_a_folder_of_pictures_in_pixel_space(seg_run: Run, ckpt: Path, tmp_path: Path) -> None:
    """PNG / JPEG pictures (many public aerial sets) are scenes too; writing their masks raises
    no GDAL warning about the identity transform (a user would see it once per mask)."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for name, driver in (("a.png", "PNG"), ("b.jpg", "JPEG")):
            image, _ = synthetic_pair(70, 90, 3, 1)
            with rasterio.open(folder / name, "w", driver=driver, width=90, height=70, count=3,
                               dtype="uint8") as dst:  # fmt: skip
                dst.write(image)
    out = tmp_path / "masks"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = seg_run("predict", folder, "-k", ckpt, "--out", out, "--pixel-space", "-q")
    assert code == 0 and err.strip() == "", err
    assert not [w for w in seen if issubclass(w.category, NotGeoreferencedWarning)]
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_mask.tif", "b_mask.tif"]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("five_bands", "5 bands"),
        ("one_band", "1 bands"),
        ("uint16", "uint16"),
        ("complex", "complex"),
        ("not_a_raster", "not a raster"),
        ("missing", "does not exist"),
        ("unwritable", "cannot write"),
        ("bad_checkpoint", "not a readable seg checkpoint"),
        ("bad_overlap", "--overlap"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    seg_run: Run, ckpt: Path, tmp_path: Path, kind: str, message: str
) -> None:
    src = tmp_path / "in.tif"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "mask.tif"
    args: list[Any] = []
    k = ckpt
    if kind == "five_bands":  # (4 plain uint8 bands would be RGBA: alpha is not a band)
        scene(src, 40, 40, bands=5)
    elif kind == "one_band":
        scene(src, 40, 40, bands=1)
    elif kind == "uint16":
        write_geotiff(src, (synthetic_pair(40, 40)[0].astype("uint16") * 200))
    elif kind == "complex":
        write_geotiff(src, np.ones((1, 40, 40), np.complex64))
    elif kind == "not_a_raster":
        src.write_text("hello")
    elif kind == "unwritable":
        scene(src, 40, 40)
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub" / "mask.tif"  # a folder below a file cannot be made
    elif kind == "bad_checkpoint":
        scene(src, 40, 40)
        k = tmp_path / "bad.pt"
        k.write_bytes(b"not a checkpoint")
    elif kind == "bad_overlap":
        scene(src, 40, 40)
        args = ["--overlap", "64"]
    code, _, err = seg_run("predict", src, "-k", k, "--out", out, "-q", *args)
    assert one_line_error(code, err) and message in err, err
    assert os.listdir(out_dir) == []  # nothing half-written
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_polygons_merge_across_strips() -> None:
    """Strip-wise polygonising gives the same regions as polygonising the whole raster."""
    import shapely

    from seg.geo.polygons import Polygonizer

    rng = np.random.default_rng(3)
    classes = (rng.random((90, 70)) > 0.5).astype(np.uint8)
    classes[rng.random((90, 70)) > 0.97] = 2
    classes[:5, :5] = 255
    t = Affine(2.0, 0.0, 100.0, 0.0, -2.0, 500.0)
    whole = Polygonizer(90, t, ["a", "b", "c"])
    whole.add(0, classes)
    strips = Polygonizer(90, t, ["a", "b", "c"])
    for r in range(0, 90, 13):
        strips.add(r, classes[r : r + 13])

    def canon(p: Polygonizer) -> list[tuple[int, str]]:
        out = []
        for f in p.features():
            g = shapely.normalize(shapely.simplify(shapely.geometry.shape(f["geometry"]), 0))
            out.append((f["properties"]["class_id"], shapely.to_wkt(g, rounding_precision=6)))
        return sorted(out)

    got, want = canon(strips), canon(whole)
    assert len(got) == len(want) > 100
    assert got == want


def test_store_predictions_stitch_to_the_same_masks(
    seg_run: Run, ckpt: Path, tmp_path: Path, root: str
) -> None:
    """`seg predict --store` + `seg stitch` == `seg predict` on the scene (same blending code;
    the store's windows get no coarse pass), with the store, the predictions and the masks local
    or on gs:// (`root`). `--coarse-pass on` is refused for a store in one line."""
    from seg.geo.raster import open_raster

    src = scene(tmp_path / "s.tif", 150, 131, seed=4)
    store, preds, stitched = (f"{root}/{n}" for n in ("ds.zarr", "preds.zarr", "stitched"))
    code, _, err = seg_run("tile", src, "--out", store, "--size", "64", "--stride", "48", "-q")
    assert code == 0, err
    fp32 = ("--precision", "fp32", "-q")
    code, out, err = seg_run("predict", "--store", store, "-k", ckpt, "--out", preds, *fp32)
    assert code == 0 and "1 predicted" in out, err
    code, out, err = seg_run(
        "stitch", preds, "--out", stitched, "--probabilities", "--vector", "geojson", "-q"
    )
    assert code == 0 and "1 predicted" in out, err
    direct = tmp_path / "direct.tif"
    code, _, err = seg_run(
        "predict", src, "-k", ckpt, "--out", direct, "--overlap", "16", "--probabilities",
        "--coarse-pass", "off", *fp32,
    )  # fmt: skip
    assert code == 0, err
    with open_raster(f"{stitched}/s_mask.tif") as a, rasterio.open(direct) as b:
        assert (a.width, a.height, a.crs, a.transform) == (b.width, b.height, b.crs, b.transform)
        ma, mb = a.read(1), b.read(1)
    with (
        open_raster(f"{stitched}/s_mask_probs.tif") as a,
        rasterio.open(tmp_path / "direct_probs.tif") as b,
    ):
        pa, pb = a.read().astype(int), b.read().astype(int)
    assert np.abs(pa - pb).max() <= 1  # float16 storage of window probabilities
    assert (ma == mb).mean() > 0.995
    # Re-running skips what is done.
    code, out, _ = seg_run("stitch", preds, "--out", stitched, "-q")
    assert code == 0 and "1 skipped" in out
    code, out, _ = seg_run("predict", "--store", store, "-k", ckpt, "--out", preds, "-q")
    assert code == 0 and "1 skipped" in out
    code, _, err = seg_run("stitch", store, "--out", f"{root}/x", "-q")
    assert code == 1 and "not a seg predictions zarr" in err
    on = ("--coarse-pass", "on")
    code, _, err = seg_run("predict", "--store", store, "-k", ckpt, "-o", f"{root}/y", *on)
    assert one_line_error(code, err) and "--coarse-pass" in err, err


ROBUSTNESS = sorted(
    p.name for p in (Path(__file__).resolve().parents[3] / "shared/data/rasters").glob("*.tif")
) or ["RGB.byte.tif"]


@pytest.fixture(scope="module")
def ckpt128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt128") / "best.pt", size=128)


@pytest.mark.parametrize("name", ROBUSTNESS)
def test_real_rasters_are_predicted_or_refused_clearly(
    seg_run: Run, ckpt128: Path, tmp_path: Path, name: str
) -> None:
    from conftest import shared_data

    src = shared_data("rasters", name)
    out = tmp_path / "mask.tif"
    fast = ("--overlap", "0", "--batch-size", "8")  # fewer windows: the blending is tested above
    code, _, err = seg_run("predict", src, "-k", ckpt128, "--out", out, "-q", *fast)
    if code == 1:  # refused: one line that says why, nothing written
        assert err.startswith("seg: error:") and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
        return
    assert code == 0, err
    with rasterio.open(src) as s, rasterio.open(out) as m:
        assert (m.width, m.height, m.crs, m.transform) == (s.width, s.height, s.crs, s.transform)
        mask = m.read(1)
        np.testing.assert_array_equal(mask == 255, s.dataset_mask() == 0)


def test_bands_option_picks_model_inputs(seg_run: Run, ckpt: Path, tmp_path: Path) -> None:
    src = scene(tmp_path / "five.tif", 40, 40, bands=5)
    out = tmp_path / "five_mask.tif"
    code, _, err = seg_run("predict", src, "-k", ckpt, "--out", out, "--bands", "5,3,1", "-q")
    assert code == 0, err
    assert out.exists()
    code, _, err = seg_run("predict", src, "-k", ckpt, "-o", out, "--bands", "1,2", "--overwrite")
    assert code == 1 and "the model takes 3" in err


def test_a_scene_normalised_model_does_not_see_a_colour_shift(
    tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    """A checkpoint trained with `data.normalise: scene` (or `percentile`) normalises each scene
    with its own statistics: a scene and the same scene with every band scaled and offset
    (another exposure) get the same probabilities; with the training split's they do not."""
    from seg.checkpoint import CheckpointInfo, save_checkpoint
    from seg.models import build_model

    image, _ = synthetic_pair(96, 80, 3, seed=5)
    plain = write_geotiff(tmp_path / "plain.tif", image.astype(np.uint16))
    shifted = write_geotiff(tmp_path / "shifted.tif", (image.astype(np.uint16) * 3 + 40))
    probs: dict[str, dict[str, np.ndarray]] = {}
    for mode in ("scene", "percentile", "global"):
        torch.manual_seed(0)
        info = CheckpointInfo(
            model={"name": "unet_mobilenetv2", "in_channels": 3, "num_classes": 2},
            class_names=("background", "building"), bands=(1, 2, 3), mean=(100.0,) * 3,
            std=(40.0,) * 3, size=64, dtype="uint16", normalise=mode,
        )  # fmt: skip
        ckpt = tmp_path / f"{mode}.pt"
        save_checkpoint(str(ckpt), info, build_model(info.model).state_dict())
        probs[mode] = {}
        for scene in (plain, shifted):
            out = tmp_path / mode / f"{scene.stem}_mask.tif"
            args = ["predict", scene, "-k", ckpt, "--out", out, "--probabilities", "-q"]
            code, _, err = seg_run(*args)
            assert code == 0, err
            with rasterio.open(out.with_name(f"{scene.stem}_mask_probs.tif")) as ds:
                probs[mode][scene.stem] = ds.read().astype(np.float32)
    same = np.abs(probs["scene"]["plain"] - probs["scene"]["shifted"]).max()
    stretched = np.abs(probs["percentile"]["plain"] - probs["percentile"]["shifted"]).max()
    apart = np.abs(probs["global"]["plain"] - probs["global"]["shifted"]).max()
    assert max(same, stretched) < 0.02 < apart, (same, stretched, apart)


def test_training_stats_normalise_with_the_checkpoints_statistics(
    tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    """`--training-stats`: a `data.normalise: scene` model given the training statistics the
    checkpoint keeps predicts exactly as the same weights trained with `global` do (and not as
    with the scene's own); a percentile model is refused in one line."""
    from seg.checkpoint import CheckpointInfo, save_checkpoint
    from seg.models import build_model

    image, _ = synthetic_pair(96, 80, 3, seed=6)
    src = write_geotiff(tmp_path / "scene.tif", image.astype(np.uint16) * 3 + 40)
    ckpts = {}
    for mode in ("scene", "global", "percentile"):
        torch.manual_seed(0)  # the same weights in every checkpoint
        info = CheckpointInfo(
            model={"name": "unet_mobilenetv2", "in_channels": 3, "num_classes": 2},
            class_names=("background", "building"), bands=(1, 2, 3), mean=(100.0,) * 3,
            std=(40.0,) * 3, size=64, dtype="uint16", normalise=mode,
        )  # fmt: skip
        ckpts[mode] = tmp_path / f"{mode}.pt"
        save_checkpoint(str(ckpts[mode]), info, build_model(info.model).state_dict())

    def probs(mode: str, *flags: str) -> np.ndarray:
        out = tmp_path / f"{mode}{''.join(flags)}" / "mask.tif"
        code, _, err = seg_run(
            "predict", src, "-k", ckpts[mode], "--out", out, "--probabilities", "-q", *flags
        )
        assert code == 0, err
        with rasterio.open(out.with_name("mask_probs.tif")) as ds:
            return ds.read().astype(np.float32)

    given = probs("scene", "--training-stats")
    assert np.array_equal(given, probs("global"))
    assert np.abs(given - probs("scene")).max() > 0.02
    out = tmp_path / "p" / "mask.tif"
    code, _, err = seg_run("predict", src, "-k", ckpts["percentile"], "-o", out, "--training-stats")
    assert code == 1 and "--training-stats" in err and len(err.strip().splitlines()) == 1, err
    assert not out.parent.exists() or not any(out.parent.iterdir())
