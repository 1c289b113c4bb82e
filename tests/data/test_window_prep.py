"""No train/predict skew: a window read by the training dataset and the same window read by
`seg predict` from the scene reach the network as identical tensors (nodata, padding,
normalisation), for windows inside the scene, at its border, and for a scene smaller than one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import synthetic_pair, write_geotiff

from seg.data.dataset import WindowDataset
from seg.data.store import WindowStore
from seg.data.tile import tile_scenes
from seg.data.window_prep import Normalisation, prepare_window, store_valid
from seg.geo.raster import scene_info
from seg.inference.batches import batches, window_reader
from seg.tile_config import TileConfig

SIZE = 64


def scene_with_nodata(folder: Path, height: int, width: int) -> tuple[Path, Path]:
    image, mask = synthetic_pair(height, width, 3, seed=4)
    image = np.clip(image, 1, 255).astype(np.uint8)  # 0 is the nodata value only
    image[:, : height // 3, : width // 4] = 0  # a no-data corner
    image[:, -3:, -5:] = 0  # and a few pixels at the far corner
    scene = write_geotiff(folder / "s.tif", image, nodata=0)
    label = write_geotiff(folder / "s_mask.tif", mask)
    return scene, label


@pytest.mark.parametrize(("height", "width"), [(150, 131), (40, 50)])
def test_dataset_and_predict_prepare_the_same_window_identically(
    tmp_path: Path, height: int, width: int
) -> None:
    scene, label = scene_with_nodata(tmp_path, height, width)
    store_path = str(tmp_path / "ds.zarr")
    cfg = TileConfig(size=SIZE, stride=48, max_nodata=1.0)  # keep every window
    tile_scenes([str(scene)], store_path, cfg, labels=str(label))
    store = WindowStore.open(store_path)
    norm = Normalisation.from_store(store, ["s"])
    train = WindowDataset(store_path, ["s"], norm, augment=None)  # what training sees
    with rasterio.open(scene) as ds:
        info = scene_info(ds, str(scene), None, False)
        grid = batches(
            window_reader(ds, info), height, width, size=SIZE, stride=48, norm=norm, batch_size=1
        )
        seen = list(grid)  # what prediction sees, window by window
    assert len(seen) == len(train) > 0
    windows = store.scene("s").windows
    for i, (wins, x, _) in enumerate(seen):
        w = wins[0]
        assert tuple(windows[i]) == (w.row_off, w.col_off, w.height, w.width)
        np.testing.assert_array_equal(train[i][0].numpy(), x[0])  # (C, S, S), exactly
    # The preparation is not trivially equal: nodata is 0 (the mean), valid pixels are not.
    x = seen[0][1][0]
    assert (x[:, 0, 0] == 0).all() and np.abs(x).max() > 0.5


def test_nodata_and_padding_are_the_training_mean() -> None:
    norm = Normalisation(np.array([100.0, 50.0]), np.array([10.0, 5.0]))
    raw = np.full((2, 3, 4), 120, np.uint16)
    valid = np.ones((3, 4), bool)
    valid[0, 0] = False
    x = prepare_window(raw, valid, norm, 8)
    assert x.shape == (2, 8, 8) and x.dtype == np.float32
    assert (x[:, 0, 0] == 0).all()  # no data: the mean, as in training
    assert x[0, 1, 1] == pytest.approx(2.0) and x[1, 1, 1] == pytest.approx(14.0)
    assert (x[:, 3:, :] == 0).all() and (x[:, :, 4:] == 0).all()  # padding


def test_store_valid_reads_back_what_tile_blanked() -> None:
    raw = np.ones((3, 4, 4), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    raw[:, 0, 0], mask[0, 0] = 0, 255  # blanked by seg tile: no data
    mask[1, 1] = 255  # unlabelled, but the image is there: still valid input
    raw[:, 2, 2] = 0  # a black pixel with a label: valid
    valid = store_valid(raw, mask, 3, 4)
    assert not valid[0, 0] and valid[1, 1] and valid[2, 2]
    assert not valid[3].any()  # beyond the window's valid height: padding


@pytest.mark.parametrize("mode", ["scene", "percentile"])
def test_per_scene_normalisation_is_the_same_in_training_and_prediction(
    tmp_path: Path, mode: str
) -> None:
    """`data.normalise: scene` (or `percentile`): each scene is normalised with its own
    statistics (mean/std, or 2nd/98th percentiles), which the store keeps and `seg predict`
    recomputes from the scene alike."""
    from seg.data.window_prep import scene_stats

    scene, _ = scene_with_nodata(tmp_path, 150, 131)
    image, _ = synthetic_pair(90, 70, 3, seed=9)
    other = write_geotiff(tmp_path / "t.tif", (image // 2 + 60).astype(np.uint8))  # duller
    write_geotiff(tmp_path / "t_mask.tif", np.zeros((90, 70), np.uint8))
    store_path = str(tmp_path / "ds.zarr")
    cfg = TileConfig(size=SIZE, stride=48, max_nodata=1.0)
    tile_scenes([str(scene), str(other)], store_path, cfg, labels=str(tmp_path))
    store = WindowStore.open(store_path)
    pooled = Normalisation.from_store(store, ["s", "t"])
    train = WindowDataset(store_path, ["s", "t"], pooled, normalise=mode)
    for sid, path in (("s", scene), ("t", other)):
        kept = store.scene(sid).band_stats
        with rasterio.open(path) as ds:
            info = scene_info(ds, str(path), None, False)
            stats = scene_stats(ds, info, rows=37)  # strips of any height: the same numbers
            own = Normalisation.for_scene(mode, stats, pooled)
            grid = batches(
                window_reader(ds, info), info.height, info.width, size=SIZE, stride=48,
                norm=own, batch_size=1,
            )  # fmt: skip
            seen = [x[0] for _, x, _ in grid]
        np.testing.assert_allclose(stats.mean, kept.mean)
        np.testing.assert_allclose(stats.std, kept.std)
        np.testing.assert_array_equal(stats.percentiles(), kept.percentiles())
        first = [i for i, (k, _) in enumerate(train.index) if store.scene_ids()[k] == sid]
        for i, x in zip(first, seen, strict=True):
            np.testing.assert_allclose(train[i][0].numpy(), x, rtol=1e-6, atol=1e-6)
    # Not trivially so: the duller scene is stretched back, unlike with the pooled statistics.
    t_own = train[len(train) - 1][0].numpy()
    t_pooled = WindowDataset(store_path, ["s", "t"], pooled)[len(train) - 1][0].numpy()
    assert t_own.std() > 1.5 * t_pooled.std()
