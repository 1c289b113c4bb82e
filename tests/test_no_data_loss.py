"""seg never destroys a user's files: an --out that holds something seg did not write is refused
in one line, with every file left exactly as it was (with and without --overwrite)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff

from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes (symlinks as their target)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + str(p.readlink())
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def scene(folder: Path, name: str = "x") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image, mask = synthetic_pair(64, 64, 3, seed=2)
    write_geotiff(folder / f"{name}_mask.tif", mask)  # a label beside its scene
    return write_geotiff(folder / f"{name}.tif", image)


@pytest.mark.parametrize("overwrite", [False, True])
def test_tile_into_a_folder_that_is_not_a_store(
    tmp_path: Path, seg_run: Run, overwrite: bool
) -> None:
    s = scene(tmp_path / "scenes")
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "thesis.txt").write_text("three years of work")
    before = snapshot(tmp_path)
    flags = ["--overwrite"] if overwrite else []
    for out in (keep, tmp_path / "scenes"):  # a folder of the user's, and the inputs' own folder
        code, _, err = seg_run("tile", s, "--size", "64", "--out", out, "-q", *flags)
        assert one_line_error(code, err) and "not a seg window store" in err, err
    assert snapshot(tmp_path) == before


def test_tile_into_an_empty_folder_works_and_a_failure_leaves_it_empty(
    tmp_path: Path, seg_run: Run
) -> None:
    s = scene(tmp_path / "scenes")
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = write_geotiff(tmp_path / "v_mask.tif", np.full((64, 64), 300, np.uint16))
    code, _, err = seg_run("tile", s, "--labels", bad, "--size", "64", "--out", empty, "-q")
    assert code == 1 and list(empty.iterdir()) == [], err  # label 300: refused, folder empty
    code, _, err = seg_run("tile", s, "--size", "64", "--out", empty, "-q")
    assert code == 0, err
    assert WindowStore.open(str(empty)).scene_ids() == ["x"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_predict_never_takes_a_label_for_its_output(
    tmp_path: Path, seg_run: Run, overwrite: bool
) -> None:
    folder = tmp_path / "scenes"
    scene(folder)
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    before = snapshot(folder)
    flags = ["--overwrite"] if overwrite else []
    code, _, err = seg_run("predict", folder / "x.tif", "-k", ckpt, "--out", folder, "-q", *flags)
    assert one_line_error(code, err) and "not written by seg predict" in err, err
    assert snapshot(folder) == before


def test_predict_never_overwrites_a_symlinked_input(tmp_path: Path, seg_run: Run) -> None:
    real = scene(tmp_path / "data")
    link = tmp_path / "link.tif"
    link.symlink_to(real)
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    before = snapshot(tmp_path)
    code, _, err = seg_run("predict", link, "-k", ckpt, "--out", real, "-q", "--overwrite")
    assert one_line_error(code, err) and "would overwrite the input" in err, err
    assert snapshot(tmp_path) == before


def test_predict_store_into_the_store_is_refused(tmp_path: Path, seg_run: Run) -> None:
    s = scene(tmp_path / "scenes")
    store = tmp_path / "ds.zarr"
    assert seg_run("tile", s, "--size", "64", "--out", store, "-q")[0] == 0
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    before = snapshot(store)
    code, _, err = seg_run("predict", "--store", store, "-k", ckpt, "--out", store, "-q")
    assert one_line_error(code, err) and "window store itself" in err, err
    assert snapshot(store) == before and WindowStore.open(str(store)).scene_ids() == ["x"]
