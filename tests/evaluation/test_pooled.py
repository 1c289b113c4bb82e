"""`seg eval` of many masks at once: a folder against a folder, and a store's test split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff

Run = Callable[..., tuple[int, str, str]]
SIZES = {"a": (70, 90), "b": (64, 64), "c": (100, 50)}


def scenes_with_labels(folder: Path) -> list[Path]:
    """Scenes and their `<id>_mask.tif` labels side by side, as `seg tile` reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (name, (h, w)) in enumerate(SIZES.items()):
        image, mask = synthetic_pair(h, w, 3, seed=k)
        write_geotiff(folder / f"{name}_mask.tif", mask)
        out.append(write_geotiff(folder / f"{name}.tif", image))
    return out


def test_a_folder_of_masks_pools_the_confusion_matrices(tmp_path: Path, seg_run: Run) -> None:
    scenes = scenes_with_labels(tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    masks = tmp_path / "masks"
    assert seg_run("predict", *scenes, "-k", ckpt, "--out", masks, "-q")[0] == 0
    single = []
    for s in scenes:  # the one-mask path, scene by scene
        truth = s.with_name(s.stem + "_mask.tif")
        rep = tmp_path / f"one_{s.stem}"
        code, _, err = seg_run("eval", masks / f"{s.stem}_mask.tif", truth, "--out", rep)
        assert code == 0, err
        single.append(json.loads((rep / "report.json").read_text()))
    out = tmp_path / "report"
    # Truth is the scenes' own folder: the scene files themselves are never taken for truth.
    code, text, err = seg_run("eval", masks, tmp_path / "scenes", "--out", out, "-q")
    assert code == 0, err
    data = json.loads((out / "report.json").read_text())
    summed = np.sum([np.asarray(r["confusion_matrix"]) for r in single], axis=0)
    np.testing.assert_array_equal(np.asarray(data["confusion_matrix"]), summed)
    assert [r["scene"] for r in data["scenes"]] == ["a", "b", "c"]
    assert [r["truth"] for r in data["scenes"]] == [
        str(tmp_path / "scenes" / f"{n}_mask.tif") for n in SIZES
    ]
    for row, one in zip(data["scenes"], single, strict=True):
        assert row["miou"] == one["miou"]
    worst = min(data["scenes"], key=lambda r: r["miou"])["scene"]
    assert data["worst"][0] == worst and (out / "overlays" / f"{worst}.png").exists()
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "http" not in page  # self-contained
    assert f"{data['miou']:.4f}" in page and "3 scenes, pooled" in text


@pytest.mark.slow
def test_a_store_split_is_predicted_and_scored_in_one_command(tmp_path: Path, seg_run: Run) -> None:
    scenes = scenes_with_labels(tmp_path / "scenes")
    store = tmp_path / "ds.zarr"
    code, _, err = seg_run(
        "tile", *scenes, "--labels", tmp_path / "scenes", "--size", "64", "--out", store,
        "--set", "splits.test_scenes=[a,c]", "-q",
    )  # fmt: skip
    assert code == 0, err
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    out = tmp_path / "test_report"
    args = ["eval", "-k", ckpt, "--store", store, "--split", "test", "--out", out, "-q"]
    code, _, err = seg_run(*args)
    assert code == 0, err
    data = json.loads((out / "report.json").read_text())
    assert [r["scene"] for r in data["scenes"]] == ["a", "c"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a_mask.tif", "c_mask.tif"]
    mask = (out / "masks" / "a_mask.tif").read_bytes()
    code, _, err = seg_run(*args)  # again: the masks are this checkpoint's, so only scored
    assert code == 0 and (out / "masks" / "a_mask.tif").read_bytes() == mask, err
    assert json.loads((out / "report.json").read_text())["miou"] == data["miou"]


def test_a_default_store_has_no_test_split_and_says_how_to_get_one(
    tmp_path: Path, seg_run: Run
) -> None:
    """`seg tile`'s defaults keep every scene for training but the validation share; asking such
    a store for its test split is one line that names the re-tile setting."""
    scenes = scenes_with_labels(tmp_path / "scenes")
    store = tmp_path / "ds.zarr"
    code, _, err = seg_run(
        "tile", *scenes, "--labels", tmp_path / "scenes", "--size", "64", "--out", store, "-q"
    )
    assert code == 0, err
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    out = tmp_path / "r"
    code, _, err = seg_run("eval", "-k", ckpt, "--store", store, "--out", out, "-q")
    assert one_line_error(code, err) and "splits.test=0.1" in err, err
    assert "['train', 'val']" in err and not out.exists()


def test_many_masks_mistakes_are_one_line(tmp_path: Path, seg_run: Run) -> None:
    scenes = scenes_with_labels(tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    masks = tmp_path / "masks"
    assert seg_run("predict", *scenes, "-k", ckpt, "--out", masks, "-q")[0] == 0
    code, _, err = seg_run("eval", masks, tmp_path / "scenes", "-q")
    assert one_line_error(code, err) and "needs --out" in err, err
    (tmp_path / "scenes" / "b_mask.tif").unlink()
    code, _, err = seg_run("eval", masks, tmp_path / "scenes", "--out", tmp_path / "r", "-q")
    assert one_line_error(code, err) and "no label raster for scene" in err, err
    assert not (tmp_path / "r").exists()
    code, _, err = seg_run("eval", "-k", ckpt, "--out", tmp_path / "r", "-q")
    assert one_line_error(code, err) and "--store" in err, err
