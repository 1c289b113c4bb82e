"""`seg tile` end to end through the real CLI: windows, masks, nodata, bands, dtypes, splits,
shards, metadata, resume, and the store it leaves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import write_geotiff
from rasterio.windows import Window as RioWindow

from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


def test_windows_hold_the_scene_pixels_and_labels(tmp_path: Path, make_scene, seg_run: Run) -> None:
    scene, mask = make_scene("city", height=150, width=100)
    out = tmp_path / "ds.zarr"
    code, stdout, _ = seg_run("tile", scene, "--labels", mask, "--out", out, "--size", "64", "-q")
    assert code == 0, stdout
    assert "1 scenes (1 tiled" in stdout and "6 windows" in stdout
    store = WindowStore.open(str(out))
    assert store.settings["size"] == 64 and store.classes == ["background", "building"]
    (s,) = store.scenes()
    assert s.scene_id == "city" and s.image.shape == (6, 3, 64, 64) and s.mask.shape == (6, 64, 64)
    with rasterio.open(scene) as src, rasterio.open(mask) as lab:
        image, labels = src.read(), lab.read(1)
        assert (
            s.attrs.crs == src.crs.to_wkt() and list(s.attrs.transform) == list(src.transform)[:6]
        )
        for i, (r, c, h, w) in enumerate(s.windows):
            assert (h, w) == (64, 64)  # 150 and 100 are covered with the last window shifted in
            np.testing.assert_array_equal(s.image[i], image[:, r : r + 64, c : c + 64])
            np.testing.assert_array_equal(s.mask[i], labels[r : r + 64, c : c + 64])
            # The georeference of each window is rebuilt exactly.
            assert s.window_transform(i) == rasterio.windows.transform(
                RioWindow(c, r, 64, 64), src.transform
            )
    assert sorted({int(r) for r in s.windows[:, 0]}) == [0, 64, 86]
    stats = store.band_stats()
    np.testing.assert_allclose(stats.mean, image.reshape(3, -1).mean(axis=1))
    np.testing.assert_allclose(stats.std, image.reshape(3, -1).std(axis=1), rtol=1e-6)
    assert list(stats.minimum) == list(image.reshape(3, -1).min(axis=1))


def test_small_scene_is_padded_and_padding_ignored(
    tmp_path: Path, make_scene, seg_run: Run
) -> None:
    scene, mask = make_scene("tiny", height=40, width=50)
    code, _, err = seg_run(
        "tile", scene, "--labels", mask, "--out", tmp_path / "s.zarr", "--size", "64", "-q"
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "s.zarr")).scenes()
    assert s.windows.tolist() == [[0, 0, 40, 50]]
    m, im = s.mask[0], s.image[0]
    assert (m[40:] == 255).all() and (m[:, 50:] == 255).all() and (m[:40, :50] != 255).all()
    assert (im[:, 40:] == 0).all()


def test_nodata_is_ignore_and_mostly_empty_windows_skipped(tmp_path: Path, seg_run: Run) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(1, 1000, size=(2, 128, 128)).astype(np.int16)
    data[:, :64, :64] = -9999  # one window entirely nodata
    data[:, 64:74, 64:] = -9999  # 10 rows of another window
    data[0, 100, 100] = -9999  # nodata in one band only: still valid (GDAL dataset mask rule)
    scene = write_geotiff(tmp_path / "nd.tif", data, nodata=-9999)
    label = write_geotiff(tmp_path / "nd_mask.tif", np.ones((128, 128), np.uint8))
    out = tmp_path / "nd.zarr"
    code, stdout, _ = seg_run("tile", scene, "--labels", label, "--out", out, "--size", "64", "-q")
    assert code == 0 and "3 windows, 1 skipped" in stdout
    (s,) = WindowStore.open(str(out)).scenes()
    assert s.attrs.nodata == -9999 and s.image.dtype == np.int16
    i = [tuple(w[:2]) for w in s.windows].index((64, 64))
    assert (s.mask[i][:10] == 255).all() and (s.mask[i][10:] == 1).all()
    assert (s.image[i][:, :10] == 0).all()  # nodata values are not fed to the model
    stats = WindowStore.open(str(out)).band_stats()
    assert stats.minimum[1] >= 1  # -9999 in every band never enters the statistics
    assert stats.minimum[0] == -9999  # the one-band "nodata" pixel is a valid pixel
    # A stricter limit skips the partly empty window as well.
    code, stdout, _ = seg_run(
        "tile", scene, "--out", tmp_path / "b.zarr", "--size", "64", "--max-nodata", "0.1", "-q"
    )
    assert "2 windows, 2 skipped" in stdout


def test_alpha_band_is_a_mask_not_a_band(tmp_path: Path, seg_run: Run) -> None:
    rgba = np.full((4, 64, 64), 120, np.uint8)
    rgba[3] = 255
    rgba[3, :8] = 0
    path = tmp_path / "rgba.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="uint8",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(0, 0, 1, 1),
        photometric="RGB",
        alpha="YES",
    ) as dst:
        dst.write(rgba)
    label = write_geotiff(
        tmp_path / "rgba_mask.tif",
        np.zeros((64, 64), np.uint8),
        transform=rasterio.transform.from_origin(0, 0, 1, 1),
    )
    code, _, err = seg_run(
        "tile", path, "--labels", label, "--out", tmp_path / "a.zarr", "--size", "64", "-q"
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "a.zarr")).scenes()
    assert s.image.shape[1] == 3 and (s.mask[0][:8] == 255).all() and (s.mask[0][8:] == 0).all()


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
def test_any_int_or_float_dtype_and_band_selection(
    tmp_path: Path, make_scene, seg_run: Run, dtype: str
) -> None:
    scene, _ = make_scene("d", height=64, width=64, bands=4, dtype=dtype)
    out = tmp_path / "d.zarr"
    code, _, err = seg_run("tile", scene, "--out", out, "--size", "32", "--bands", "3,1", "-q")
    assert code == 0, err
    store = WindowStore.open(str(out))
    (s,) = store.scenes()
    assert s.image.dtype == np.dtype(dtype) and s.image.shape == (4, 2, 32, 32) and s.mask is None
    assert store.settings["bands"] == [3, 1] and s.attrs.bands == (3, 1)
    with rasterio.open(scene) as src:
        np.testing.assert_array_equal(s.image[0], src.read([3, 1], window=RioWindow(0, 0, 32, 32)))


def test_metadata_tags_and_sidecar_json_in_scene_attrs(tmp_path: Path, seg_run: Run) -> None:
    scene = write_geotiff(
        tmp_path / "m.tif", np.ones((1, 64, 64), np.uint8), tags={"SENSOR": "WV3"}
    )
    meta = {
        "acquired": "2024-05-01T10:00:00Z",
        "gsd_m": 0.31,
        "off_nadir_deg": 12.5,
        "sun_elevation_deg": 48,
    }
    (tmp_path / "m.json").write_text(json.dumps(meta))
    code, _, err = seg_run("tile", scene, "--out", tmp_path / "m.zarr", "--size", "64", "-q")
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "m.zarr")).scenes()
    assert s.attrs.tags["SENSOR"] == "WV3" and s.attrs.metadata == meta


def test_rerun_skips_done_and_overwrite_starts_over(
    tmp_path: Path, make_scene, seg_run: Run
) -> None:
    folder = tmp_path / "scenes"
    for i in range(2):
        make_scene(f"s{i}_image", height=64, width=96, seed=i, folder=folder)
    out = tmp_path / "r.zarr"
    args = ("tile", folder, "--labels", folder, "--out", out, "--size", "64", "-q")
    code, stdout, _ = seg_run(*args)
    assert code == 0 and "2 scenes (2 tiled, 0 already done), 4 windows" in stdout
    before = {s.scene_id: s.image[:].copy() for s in WindowStore.open(str(out)).scenes()}
    code, stdout, _ = seg_run(*args)
    assert "(0 tiled, 2 already done), 0 windows" in stdout
    code, stdout, _ = seg_run(*args, "--overwrite")
    assert "(2 tiled, 0 already done)" in stdout
    after = {s.scene_id: s.image[:] for s in WindowStore.open(str(out)).scenes()}
    assert before.keys() == after.keys() and all(
        np.array_equal(before[k], after[k]) for k in before
    )
    # Adding to the store with other settings is refused.
    code, _, err = seg_run("tile", f"{folder}/*_image.tif", "--out", out, "--size", "32", "-q")
    assert code == 1 and "size=64" in err and len(err.strip().splitlines()) == 1


def test_splits_by_scene_and_shards_agree(
    tmp_path: Path, make_scene, seg_run: Run, monkeypatch
) -> None:
    folder = tmp_path / "many"
    for i in range(5):
        make_scene(f"z{i}", height=32, width=32, seed=i, folder=folder)
    scenes = sorted(str(p) for p in folder.glob("z?.tif"))
    whole = tmp_path / "whole.zarr"
    assert seg_run("tile", *scenes, "--out", whole, "--size", "32", "-q")[0] == 0
    sharded = tmp_path / "sharded.zarr"
    seen = []
    for index in range(2):
        monkeypatch.setenv(
            "BATCH_TASK_INDEX", str(index)
        )  # Cloud Batch's variables are the default
        monkeypatch.setenv("BATCH_TASK_COUNT", "2")
        code, _, _ = seg_run("tile", *reversed(scenes), "--out", sharded, "--size", "32", "-q")
        assert code == 0
        seen.append(WindowStore.open(str(sharded)).scene_ids())
    assert len(seen[0]) == 3 and len(seen[1]) == 5  # disjoint shares: 3 then 2 more
    # --overwrite on one shard redoes its scenes only; the other shard's scenes stay.
    code, stdout, _ = seg_run(
        "tile", *scenes, "--out", sharded, "--size", "32", "-q", "--overwrite"
    )
    assert (
        "(2 tiled, 0 already done)" in stdout
        and len(WindowStore.open(str(sharded)).scene_ids()) == 5
    )
    a, b = WindowStore.open(str(whole)), WindowStore.open(str(sharded))
    assert a.splits == b.splits and set(a.splits) == {f"z{i}" for i in range(5)}
    assert sorted(a.splits.values()) == ["train", "train", "train", "train", "val"]
    for s in a.scenes():
        assert s.attrs.split == a.splits[s.scene_id]
    # Another seed moves scenes between splits; explicit lists pin scenes.
    c = tmp_path / "pinned.zarr"
    monkeypatch.delenv("BATCH_TASK_INDEX")
    monkeypatch.delenv("BATCH_TASK_COUNT")
    seg_run(
        "tile", *scenes, "--out", c, "--size", "32", "-q", "--set", "splits.val_scenes=[z0, z1]"
    )
    assert WindowStore.open(str(c)).splits["z0"] == "val" == WindowStore.open(str(c)).splits["z1"]


def test_config_file_and_unknown_keys(tmp_path: Path, make_scene, seg_run: Run) -> None:
    scene, _ = make_scene("c", height=64, width=64)
    cfg = tmp_path / "tile.yaml"
    cfg.write_text("size: 32\nstride: 16\nclasses: [bg, road]\n")
    code, stdout, _ = seg_run("tile", scene, "--out", tmp_path / "c.zarr", "--config", cfg, "-q")
    assert code == 0 and "9 windows" in stdout
    assert WindowStore.open(str(tmp_path / "c.zarr")).classes == ["bg", "road"]
    cfg.write_text("size: 32\nsise: 16\n")
    code, _, err = seg_run("tile", scene, "--out", tmp_path / "d.zarr", "--config", cfg, "-q")
    assert code == 1 and "unknown key 'sise'" in err
    assert not (tmp_path / "d.zarr").exists()


def test_shipped_config_is_valid() -> None:
    from seg.config import load_config
    from seg.tile_config import TileConfig

    cfg = load_config(TileConfig, str(Path(__file__).parents[2] / "configs" / "tile.yaml"))
    assert cfg.size == 512


def test_sample_then_tile_quickstart(tmp_path: Path, seg_run: Run) -> None:
    data = tmp_path / "data"
    code, stdout, _ = seg_run("sample", data, "--size", "128", "--seed", "3")
    assert code == 0 and len(list(data.glob("*_image.tif"))) == 3
    first = {p.name: p.read_bytes() for p in data.iterdir()}
    seg_run("sample", data, "--size", "128", "--seed", "3")
    assert first == {p.name: p.read_bytes() for p in data.iterdir()}  # deterministic
    code, stdout, _ = seg_run(
        "tile", data, "--labels", data, "--out", tmp_path / "q.zarr", "--size", "64", "-q"
    )
    assert code == 0 and "3 scenes (3 tiled" in stdout  # the masks next to the scenes are labels
    code, stdout, _ = seg_run(
        "tile",
        *sorted(data.glob("*_image.tif")),
        "--labels",
        data / "buildings.geojson",
        "--out",
        tmp_path / "v.zarr",
        "--size",
        "64",
        "-q",
    )
    assert code == 0
    a, b = WindowStore.open(str(tmp_path / "q.zarr")), WindowStore.open(str(tmp_path / "v.zarr"))
    for x, y in zip(a.scenes(), b.scenes(), strict=True):
        np.testing.assert_array_equal(x.mask[:], y.mask[:])  # raster and vector labels agree
        assert (x.mask[:] == 1).any() and (x.mask[:] == 255).any()  # buildings and nodata corner
        assert x.attrs.metadata["sensor"] == "seg-sample"


def test_all_nodata_scene_is_done_with_no_windows(tmp_path: Path, seg_run: Run) -> None:
    scene = write_geotiff(tmp_path / "e.tif", np.zeros((1, 100, 100), np.uint8), nodata=0)
    code, stdout, err = seg_run("tile", scene, "--out", tmp_path / "e.zarr", "--size", "64", "-q")
    assert code == 0 and "0 windows, 4 skipped" in stdout, err
    (s,) = WindowStore.open(str(tmp_path / "e.zarr")).scenes()
    assert len(s) == 0 and s.image.shape == (0, 1, 64, 64) and s.windows.shape == (0, 4)
