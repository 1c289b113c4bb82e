"""Every checkpoint, config.yaml and mask says which code and data made it; `seg info` reads
any artifact back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import one_line_error, synthetic_pair, write_geotiff
from train_helpers import seg_inprocess, train_args

import seg
from seg.checkpoint import load_checkpoint
from seg.config import TrainConfig, load_config
from seg.data.store import WindowStore
from seg.provenance import code_provenance

Run = Callable[..., tuple[int, str, str]]

pytestmark = pytest.mark.slow  # several real training runs


def one_step_run(make_store, tmp_path: Path, monkeypatch, capsys) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A store and a finished one-step training run on it."""
    store = make_store({"a": "train", "b": "val"}, windows=2)
    out = tmp_path / "run"
    args = train_args(store, out, "train.epochs=1", "train.steps_per_epoch=1", "augment.crop=null")
    code, err = seg_inprocess(monkeypatch, capsys, *args)
    assert code == 0, err
    return store, out


def test_a_run_records_its_code_and_data_down_to_the_mask(
    make_store, tmp_path: Path, monkeypatch, capsys, seg_run: Run
) -> None:
    store, out = one_step_run(make_store, tmp_path, monkeypatch, capsys)
    made = load_checkpoint(str(out / "last.pt"))["provenance"]
    assert made["seg"] == seg.__version__ and made["torch"] == code_provenance()["torch"]
    assert made["segmentation_models_pytorch"] and made["data"] == str(store)
    print_ = WindowStore.open(str(store)).fingerprint()
    assert made["store"]["digest"] == print_["digest"] and made["store"]["windows"] == 4
    assert made["store"]["scenes"] == {"a": ["train", 2], "b": ["val", 2]}
    # This checkout is a git repository: its commit is recorded.
    assert made["commit"] and len(made["commit"].removesuffix("-dirty")) == 40
    text = (out / "config.yaml").read_text()
    assert text.startswith("# made by:") and f"digest={print_['digest']}" in text
    assert load_config(TrainConfig, str(out / "config.yaml")).data.batch_size == 2  # still valid
    image, _ = synthetic_pair(64, 64, 3, seed=1)
    scene = write_geotiff(tmp_path / "s.tif", image)
    mask = tmp_path / "s_mask.tif"
    code, _, err = seg_run("predict", scene, "-k", out / "last.pt", "--out", mask, "-q")
    assert code == 0, err
    with rasterio.open(mask) as ds:
        tagged = json.loads(ds.tags()["SEG_PROVENANCE"])
    assert tagged["model"]["store"]["digest"] == print_["digest"]
    assert "scenes" not in tagged["model"]["store"]  # the long list stays in the checkpoint
    assert tagged["predicted_with"]["seg"] == seg.__version__


def test_seg_info_says_what_each_artifact_is(
    make_store, tmp_path: Path, monkeypatch, capsys, seg_run: Run
) -> None:
    store, out = one_step_run(make_store, tmp_path, monkeypatch, capsys)
    image, _ = synthetic_pair(64, 64, 3, seed=1)
    scene = write_geotiff(tmp_path / "s.tif", image)
    assert seg_run("predict", scene, "-k", out / "last.pt", "--out", tmp_path / "m.tif")[0] == 0
    seen = {}
    for path in (store, out / "last.pt", tmp_path / "m.tif", scene):
        code, text, err = seg_run("info", path)
        assert code == 0, err
        seen[path.name] = yaml.safe_load(text)
    assert seen["ds.zarr"]["kind"] == "window store" and seen["ds.zarr"]["windows"] == 4
    assert seen["ds.zarr"]["splits"] == {"train": {"scenes": 1, "windows": 2},
                                         "val": {"scenes": 1, "windows": 2}}  # fmt: skip
    ckpt = seen["last.pt"]
    assert ckpt["kind"] == "checkpoint" and ckpt["classes"] == ["background", "building"]
    assert ckpt["trained"] == {"epoch": 1, "step": 1} and ckpt["parameters"] > 10**5
    assert ckpt["provenance"]["data"] == str(store)
    assert seen["m.tif"]["kind"] == "mask" and seen["m.tif"]["classes"] == [
        "background",
        "building",
    ]
    assert seen["s.tif"]["kind"] == "raster" and seen["s.tif"]["bands"] == 3
    (tmp_path / "notes.txt").write_text("not an artifact")
    code, _, err = seg_run("info", tmp_path / "notes.txt")
    assert one_line_error(code, err) and "not a window store, a seg checkpoint or a raster" in err
    assert np.isfinite(ckpt["band_stats"]["mean"]).all()
