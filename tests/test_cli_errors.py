"""Every command's answer to a user's mistake, in one table: exit 1, one line `seg: error: ...`
that names the problem, no traceback, and nothing written where the output would have gone.

Each row: a builder that makes the bad input in a temporary folder and returns the command line
and the output path that must not appear, and the words the message must contain. The
per-command test modules keep the cases that need more set-up (kills, resumes, GPUs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from conftest import one_line_error, synthetic_pair, write_geotiff

Case = Callable[[Path], tuple[list[Any], Path]]
T = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)


def scene(folder: Path, name: str = "s", h: int = 64, w: int = 64, bands: int = 3) -> Path:
    image, mask = synthetic_pair(h, w, bands, seed=1)
    write_geotiff(folder / f"{name}_mask.tif", mask)
    return write_geotiff(folder / f"{name}.tif", image)


def corrupt(folder: Path, name: str = "broken.tif") -> Path:
    path = folder / name
    path.write_bytes(b"II*\x00 this is not a tiff")
    return path


def checkpoint(folder: Path, bands: int = 3) -> Path:
    from conftest import make_checkpoint

    return make_checkpoint(folder / "best.pt", bands=bands, size=64)


def tile_corrupt(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "ds.zarr"
    return ["tile", scene(tmp), corrupt(tmp), "--size", "64", "--out", out], out


def tile_mask_mismatch(tmp: Path) -> tuple[list[Any], Path]:
    """A label raster of another size with no georeference: no way to place it on the scene."""
    s = scene(tmp)
    write_geotiff(tmp / "other_mask.tif", np.zeros((40, 30), np.uint8), crs=None)
    out = tmp / "ds.zarr"
    return ["tile", s, "--labels", tmp / "other_mask.tif", "--size", "64", "--out", out], out


def tile_crs_mixup(tmp: Path) -> tuple[list[Any], Path]:
    """Coordinates in the scene's UTM metres in a GeoJSON without `crs` (so read as lon/lat)."""
    s = scene(tmp)
    ring = [[500001.0, 3999999.0], [500010.0, 3999999.0], [500010.0, 3999990.0]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon"}}
    feature["geometry"]["coordinates"] = [[*ring, ring[0]]]  # type: ignore[index]
    path = tmp / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp / "ds.zarr"
    return ["tile", s, "--labels", path, "--size", "64", "--out", out], out


def tile_config_typo(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "ds.zarr"
    return ["tile", scene(tmp), "--set", "sizee=64", "--out", out], out


def train_config_typo(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "run"
    return [
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        tmp,
        "--set",
        "train.epochz=1",
        "--out",
        out,
    ], out


def train_unknown_model(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "run"
    return [
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        tmp,
        "--set",
        "model.name=unet9",
        "--out",
        out,
    ], out


def train_not_a_store(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "run"
    return [
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        tmp / "none.zarr",
        "--out",
        out,
    ], out


def predict_corrupt(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "out"
    return ["predict", corrupt(tmp), "-k", checkpoint(tmp), "--out", out, "-q"], out


def predict_foreign_checkpoint(tmp: Path) -> tuple[list[Any], Path]:
    bad = tmp / "model.pt"
    bad.write_bytes(b"PK\x03\x04 a zip that is not a seg checkpoint")
    out = tmp / "out"
    return ["predict", scene(tmp), "-k", bad, "--out", out, "-q"], out


def predict_model_for_other_bands(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "out"
    return ["predict", scene(tmp, bands=1), "-k", checkpoint(tmp), "--out", out, "-q"], out


def eval_other_grid(tmp: Path) -> tuple[list[Any], Path]:
    pred = write_geotiff(tmp / "pred.tif", np.zeros((60, 80), np.uint8), transform=T)
    truth = write_geotiff(tmp / "truth.tif", np.zeros((60, 80), np.uint8), crs="EPSG:32634")
    out = tmp / "report"
    return ["eval", pred, truth, "--out", out], out


def eval_corrupt(tmp: Path) -> tuple[list[Any], Path]:
    truth = write_geotiff(tmp / "truth.tif", np.zeros((60, 80), np.uint8), transform=T)
    out = tmp / "report"
    return ["eval", corrupt(tmp, "pred.tif"), truth, "--out", out], out


def stitch_not_predictions(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "masks"
    return ["stitch", tmp / "nothing.zarr", "--out", out], out


def tile_config_is_a_folder(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "ds.zarr"
    return ["tile", scene(tmp), "--config", tmp, "--out", out], out


def tile_class_beyond_the_classes(tmp: Path) -> tuple[list[Any], Path]:
    s = scene(tmp)
    write_geotiff(tmp / "s_mask.tif", np.full((64, 64), 7, np.uint8))  # two classes: ids 0, 1
    out = tmp / "ds.zarr"
    return ["tile", s, "--labels", tmp / "s_mask.tif", "--size", "64", "--out", out], out


def tile_fractional_labels(tmp: Path) -> tuple[list[Any], Path]:
    s = scene(tmp)
    write_geotiff(tmp / "s_mask.tif", np.full((64, 64), 0.5, np.float32))
    out = tmp / "ds.zarr"
    return ["tile", s, "--labels", tmp / "s_mask.tif", "--size", "64", "--out", out], out


def truncated(tmp: Path) -> Path:
    """A GeoTIFF whose header is intact but whose pixel data is cut off."""
    image, _ = synthetic_pair(256, 256, 3, seed=3)
    path = write_geotiff(tmp / "cut.tif", image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def tile_truncated(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "ds.zarr"
    return ["tile", truncated(tmp), "--size", "64", "--out", out], out


def predict_truncated(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "out"
    return ["predict", truncated(tmp), "-k", checkpoint(tmp), "--out", out, "-q"], out


def predict_checkpoint_is_a_folder(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "out"
    return ["predict", scene(tmp), "-k", tmp, "--out", out, "-q"], out


def resume_with_only_unreadable_checkpoints(tmp: Path) -> tuple[list[Any], Path]:
    from conftest import write_window_store

    store = write_window_store(tmp / "ds.zarr", {"a": "train", "b": "val"}, windows=2)
    run = tmp / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"torn")
    (run / "latest.json").write_text('{"checkpoint": "last.pt", "step": 4}')
    return [
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        store,
        "--out",
        run,
        "--resume",
        "auto",
    ], run / "config.yaml"


def tile_broken_geometry(tmp: Path) -> tuple[list[Any], Path]:
    """A polygon of one coordinate (shapely would raise deep inside)."""
    s = scene(tmp)
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[10.0, 50.0]]]},
    }
    path = tmp / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp / "ds.zarr"
    return ["tile", s, "--labels", path, "--size", "64", "--out", out], out


def queue_status_missing(tmp: Path) -> tuple[list[Any], Path]:
    return ["queue", "status", "--runs", tmp / "runs"], tmp / "runs"


def eval_window_size_zero(tmp: Path) -> tuple[list[Any], Path]:
    pred = write_geotiff(tmp / "pred.tif", np.zeros((60, 80), np.uint8), transform=T)
    truth = write_geotiff(tmp / "truth.tif", np.zeros((60, 80), np.uint8), transform=T)
    out = tmp / "report"
    return ["eval", pred, truth, "--window-size", "0", "--out", out], out


def eval_truth_beyond_the_classes(tmp: Path) -> tuple[list[Any], Path]:
    from conftest import make_checkpoint

    s = scene(tmp)
    mask = tmp / "pred" / "s_mask.tif"
    ckpt = make_checkpoint(tmp / "best.pt", size=64)
    from seg.inference.scenes import predict_scenes

    predict_scenes([str(s)], checkpoint=str(ckpt), out=str(mask))
    truth = write_geotiff(tmp / "t.tif", np.full((64, 64), 7, np.uint8))
    out = tmp / "report"
    return ["eval", mask, truth, "--out", out], out


def eval_truth_missing(tmp: Path) -> tuple[list[Any], Path]:
    pred = write_geotiff(tmp / "pred.tif", np.zeros((60, 80), np.uint8), transform=T)
    out = tmp / "report"
    return ["eval", pred, tmp / "nowhere.tif", "--out", out], out


def tile_shard_count_zero(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "ds.zarr"
    return ["tile", scene(tmp), "--size", "64", "--shard-count", "0", "--out", out], out


def tile_folder_without_rasters(tmp: Path) -> tuple[list[Any], Path]:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("no scenes here")
    out = tmp / "ds.zarr"
    return ["tile", tmp / "notes", "--size", "64", "--out", out], out


def predict_overlap_too_big(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "out"
    args = ["predict", scene(tmp), "-k", checkpoint(tmp), "--overlap", "64", "--out", out, "-q"]
    return args, out


def predict_out_is_the_scene(tmp: Path) -> tuple[list[Any], Path]:
    s = scene(tmp)
    return ["predict", s, "-k", checkpoint(tmp), "--out", s, "--overwrite", "-q"], tmp / "none"


CASES: dict[str, tuple[Case, str]] = {
    "tile: not a raster": (tile_corrupt, "broken.tif is not a raster"),
    "tile: mask does not match its scene": (tile_mask_mismatch, "unambiguous"),
    "tile: vector CRS mix-up": (tile_crs_mixup, "--label-crs"),
    "tile: config typo": (tile_config_typo, "unknown key 'sizee'"),
    "train: config typo": (train_config_typo, "unknown key 'train.epochz'"),
    "train: unknown model": (train_unknown_model, "choose one of ['unet_mobilenetv2', 'pix2pix']"),
    "train: not a store": (train_not_a_store, "no window store"),
    "predict: not a raster": (predict_corrupt, "not a raster"),
    "predict: not a checkpoint": (predict_foreign_checkpoint, "not a readable seg checkpoint"),
    "predict: checkpoint for other bands": (predict_model_for_other_bands, "trained on 3"),
    "eval: another CRS": (eval_other_grid, "CRS"),
    "eval: not a raster": (eval_corrupt, "not a raster"),
    "stitch: not a predictions zarr": (stitch_not_predictions, "no predictions at"),
    "queue status: no runs folder": (queue_status_missing, "does not exist"),
    "tile: --config is a folder": (tile_config_is_a_folder, "is a folder"),
    "tile: a broken GeoJSON geometry": (tile_broken_geometry, "feature 0 has an invalid geometry"),
    "tile: class id beyond the classes": (tile_class_beyond_the_classes, "class id 7"),
    "tile: fractional labels": (tile_fractional_labels, "non-integer values (e.g. 0.5)"),
    "tile: a truncated GeoTIFF": (tile_truncated, "cannot be read"),
    "predict: a truncated GeoTIFF": (predict_truncated, "cannot be read"),
    "predict: checkpoint is a folder": (predict_checkpoint_is_a_folder, "is a folder"),
    "eval: --window-size 0": (eval_window_size_zero, "--window-size 0 must be 1 or more"),
    "eval: truth does not exist": (eval_truth_missing, "does not exist"),
    "eval: truth ids beyond the classes": (eval_truth_beyond_the_classes, "class id 7"),
    "tile: --shard-count 0": (tile_shard_count_zero, "--shard-count 0 must be 1 or more"),
    "tile: a folder without rasters": (tile_folder_without_rasters, "holds no raster"),
    "predict: --overlap as big as the window": (predict_overlap_too_big, "--overlap 64 must be"),
    "predict: --out is the input scene": (predict_out_is_the_scene, "would overwrite the input"),
    "train: --resume auto, no readable checkpoint": (
        resume_with_only_unreadable_checkpoints,
        "none is readable",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_line_exit_1_and_nothing_written(
    case: str, tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    build, message = CASES[case]
    args, out = build(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = seg_run(*args)
    assert one_line_error(code, err) and message in err, err
    assert not out.exists(), f"{out} was left behind"
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "files were written, changed or removed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tile", "x.tif"], "Missing option '--out'"),
        (["tile", "x.tif", "--out", "o", "--size", "abc"], "Invalid value for '--size'"),
        (["predict", "--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console script (seg.cli.main), not click's boxed usage text."""
    from conftest import cli_runner

    from seg.cli import main

    code, _, err = cli_runner(main, "seg", capsys)(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seg: error: "), err
    assert message in err and "--help" in err, err


def test_unreachable_bucket_is_one_line(
    tmp_path: Path, gcs_bucket: str, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    code, _, err = seg_run("tile", scene(tmp_path), "--out", "gs://no-such-bucket/ds.zarr", "-q")
    assert one_line_error(code, err) and "no-such-bucket" in err, err


@pytest.mark.parametrize("where", ["index", "chunk", "one byte"])
def test_a_damaged_store_is_one_line(
    tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]], where: str
) -> None:
    """Damaged shard bytes, a damaged shard index, or one flipped bit in a window's chunk (each
    caught by a CRC32C), read by a DataLoader worker: one line naming the scene and window, and
    no checkpoint."""
    from conftest import write_window_store

    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    shard = sorted(p for p in (store / "a" / "image" / "c").rglob("*") if p.is_file())[-1]
    data = bytearray(shard.read_bytes())
    if where == "one byte":
        data[200] ^= 0x10
    else:
        span = slice(len(data) - 40, len(data) - 8) if where == "index" else slice(64, 4000)
        data[span] = np.random.default_rng(0).integers(0, 256, len(data[span]), np.uint8).tobytes()
    shard.write_bytes(bytes(data))
    run = tmp_path / "run"
    code, _, err = seg_run(
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        store,
        "--out",
        run,
        "--set",
        "data.num_workers=1",
    )
    assert one_line_error(code, err) and "scene 'a'" in err and "damaged" in err, err
    assert not list(run.glob("*.pt"))
