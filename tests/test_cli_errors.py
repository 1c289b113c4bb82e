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
    return ["train", "-c", "configs/unet_mobilenetv2.yaml", "-d", tmp, "--set", "train.epochz=1",
            "--out", out], out  # fmt: skip


def train_unknown_model(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "run"
    return ["train", "-c", "configs/unet_mobilenetv2.yaml", "-d", tmp, "--set", "model.name=unet9",
            "--out", out], out  # fmt: skip


def train_not_a_store(tmp: Path) -> tuple[list[Any], Path]:
    out = tmp / "run"
    return ["train", "-c", "configs/unet_mobilenetv2.yaml", "-d", tmp / "none.zarr",
            "--out", out], out  # fmt: skip


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


def queue_status_missing(tmp: Path) -> tuple[list[Any], Path]:
    return ["queue", "status", "--runs", tmp / "runs"], tmp / "runs"


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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_line_exit_1_and_nothing_written(
    case: str, tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    build, message = CASES[case]
    args, out = build(tmp_path)
    code, _, err = seg_run(*args)
    assert one_line_error(code, err) and message in err, err
    assert not out.exists(), f"{out} was left behind"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "temporary files left"


def test_unreachable_bucket_is_one_line(
    tmp_path: Path, gcs_bucket: str, seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    code, _, err = seg_run("tile", scene(tmp_path), "--out", "gs://no-such-bucket/ds.zarr", "-q")
    assert one_line_error(code, err) and "no-such-bucket" in err, err
