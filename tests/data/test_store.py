"""The window store: band statistics, whole-shard writing, the done marker, and open errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import scene_attrs

from seg.data.store import BandStats, WindowStore
from seg.errors import StoreError


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "float32"])
def test_band_stats_exact_for_every_path(dtype: str) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    lo, hi = (info.min, info.max) if info else (-50, 50)
    pixels = rng.integers(lo, hi, size=(3, 40, 30), endpoint=True).astype(dtype)
    valid = rng.random((40, 30)) > 0.3
    stats = BandStats.empty(3)
    stats.update(pixels[:, :20], valid[:20])
    stats.update(pixels[:, 20:], np.ones_like(valid[20:]))
    ref = np.concatenate(
        [pixels[:, :20][:, valid[:20]], pixels[:, 20:].reshape(3, -1)], axis=1
    ).astype(np.float64)
    np.testing.assert_allclose(stats.mean, ref.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, ref.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(stats.minimum, ref.min(axis=1))
    np.testing.assert_array_equal(stats.maximum, ref.max(axis=1))
    # Merging per-scene accumulators equals one pass over all pixels; JSON round trip is exact.
    other = BandStats.empty(3)
    other.update(pixels, np.ones((40, 30), bool))
    merged = BandStats.from_json(stats.to_json()).merge(other)
    both = np.concatenate([ref, pixels.reshape(3, -1).astype(np.float64)], axis=1)
    np.testing.assert_allclose(merged.mean, both.mean(axis=1), rtol=1e-12)


def test_writer_writes_whole_shards_trims_and_marks_done_last(tmp_path: Path) -> None:
    path = str(tmp_path / "w.zarr")
    store = WindowStore.create_or_open(
        path, {"size": 32, "stride": 32, "bands": "all", "classes": ["a", "b"]}
    )
    writer = store.scene_writer(
        "s",
        max_windows=40,
        bands=2,
        size=32,
        dtype=np.dtype("uint16"),
        with_mask=True,
        windows_per_shard=8,
    )
    for i in range(19):
        writer.add(
            np.full((2, 32, 32), i, np.uint16), np.full((32, 32), i % 2, np.uint8), (i, 0, 32, 32)
        )
    assert not store.is_done("s") and store.scene_ids() == []  # invisible until finished
    stats = BandStats.empty(2)
    writer.finish(scene_attrs("s.tif", 32, 19 * 32, "uint16", stats))
    s = WindowStore.open(path).scene("s")
    assert s.image.shape == (19, 2, 32, 32) and s.mask.shape == (19, 32, 32) and len(s) == 19
    assert s.image.shards == (8, 2, 32, 32) and s.image.chunks == (1, 2, 32, 32)
    assert [int(s.image[i, 0, 0, 0]) for i in range(19)] == list(range(19))
    assert s.windows[:, 0].tolist() == list(range(19))
    # A window smaller than S (a scene smaller than a window) is padded: image 0, mask 255.
    small = store.scene_writer(
        "p",
        max_windows=1,
        bands=2,
        size=32,
        dtype=np.dtype("uint16"),
        with_mask=True,
        windows_per_shard=8,
    )
    small.add(np.full((2, 20, 30), 7, np.uint16), np.ones((20, 30), np.uint8), (0, 0, 20, 30))
    small.finish(scene_attrs("p.tif", 30, 20, "uint16", stats))
    p = WindowStore.open(path).scene("p")
    assert (p.image[0][:, :20, :30] == 7).all() and (p.image[0][:, 20:] == 0).all()
    assert (p.mask[0][:20, :30] == 1).all() and (p.mask[0][:, 30:] == 255).all()
    # 19 windows in shards of 8: 3 shard objects per array, not 19.
    shards = [p for p in (tmp_path / "w.zarr" / "s" / "image" / "c").rglob("*") if p.is_file()]
    assert len(shards) == 3


def test_writer_shards_are_byte_identical_to_plain_zarr_writes(tmp_path: Path) -> None:
    """The writer skips zarr's empty-chunk checks on shards without empty windows: the bytes
    must still be exactly what plain zarr writes, empty windows (left out of shards) included."""
    from seg.data.schema import CHECKSUM, IMAGE_CODEC, MASK_CODEC

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(20, 2, 32, 32), dtype=np.uint8)  # (N, C, S, S)
    masks = rng.integers(0, 3, size=(20, 32, 32), dtype=np.uint8)
    images[10], masks[11] = 0, 255  # empty windows in the second shard, none in the first
    store = WindowStore.create_or_open(str(tmp_path / "w.zarr"), {"size": 32})
    writer = store.scene_writer(
        "s",
        max_windows=20,
        bands=2,
        size=32,
        dtype=np.dtype("uint8"),
        with_mask=True,
        windows_per_shard=8,
    )
    for i in range(20):
        writer.add(images[i], masks[i], (i, 0, 32, 32))
    writer.finish(scene_attrs("s.tif", 32, 20 * 32, "uint8", BandStats.empty(2)))
    ref = zarr.open_group(str(tmp_path / "ref.zarr"), mode="w")
    for name, data, codec, fill in (
        ("image", images, IMAGE_CODEC, 0),
        ("mask", masks, MASK_CODEC, 255),
    ):
        arr = ref.create_array(
            name,
            shape=data.shape,
            chunks=(1, *data.shape[1:]),
            shards=(8, *data.shape[1:]),
            dtype="uint8",
            compressors=[codec, CHECKSUM],
            fill_value=fill,
        )
        for start in range(0, 20, 8):
            arr[start : start + 8] = data[start : start + 8]
        ours = sorted((tmp_path / "w.zarr" / "s" / name / "c").rglob("*"))
        theirs = sorted((tmp_path / "ref.zarr" / name / "c").rglob("*"))
        assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) > 3
        for a, b in zip(ours, theirs, strict=True):
            assert a.is_dir() or a.read_bytes() == b.read_bytes(), a


def test_open_errors_and_setting_mismatch(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no window store"):
        WindowStore.open(str(tmp_path / "none.zarr"))
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a seg window store"):
        WindowStore.open(str(tmp_path / "other.zarr"))
    settings = {"size": 64, "stride": 64, "bands": "all", "classes": ["bg", "fg"]}
    WindowStore.create_or_open(str(tmp_path / "s.zarr"), settings)
    with pytest.raises(StoreError, match="classes"):
        WindowStore.create_or_open(str(tmp_path / "s.zarr"), {**settings, "classes": ["x"]})
    fresh = WindowStore.create_or_open(
        str(tmp_path / "s.zarr"), {**settings, "classes": ["x"]}, overwrite=True
    )
    assert fresh.classes == ["x"]
    with pytest.raises(StoreError, match="no finished scenes"):
        fresh.band_stats()
