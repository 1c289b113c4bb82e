"""seg.data.window_reader: the direct shard read returns exactly what zarr returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import write_window_store
from zarr.codecs import BloscCodec, BloscShuffle

from seg.data.store import WindowStore
from seg.data.window_reader import WindowReader


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_store_windows_match_zarr(tmp_path: Path, dtype: str) -> None:
    # 6 windows in shards of 4: the last shard is partial.
    path = write_window_store(tmp_path / "ds.zarr", {"a": "train"}, 32, 6, dtype=dtype)
    scene = WindowStore.open(str(path)).scene("a")
    for array in (scene.image, scene.mask):
        assert array is not None
        reader = WindowReader(array)
        assert reader.layout is not None  # the fast path is taken for seg's own layout
        for w in range(array.shape[0]):
            got = reader.read(w)
            assert got.dtype == array.dtype
            np.testing.assert_array_equal(got, array[w])


def test_unwritten_windows_and_shards_are_fill(tmp_path: Path) -> None:
    codec = BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.bitshuffle)
    a = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=(12, 2, 8, 8), chunks=(1, 2, 8, 8),
        shards=(4, 2, 8, 8), dtype="int16", compressors=[codec], fill_value=-7,
    )  # fmt: skip
    data = np.arange(2 * 2 * 8 * 8, dtype=np.int16).reshape(2, 2, 8, 8)
    a[1:3] = data  # shard 0 holds windows 1, 2 only; shards 1 and 2 are never written
    reader = WindowReader(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    assert reader.layout is not None
    for w in range(12):
        np.testing.assert_array_equal(reader.read(w), a[w])
    assert (reader.read(0) == -7).all() and (reader.read(9) == -7).all()


def test_other_layouts_go_through_zarr(tmp_path: Path) -> None:
    a = zarr.create_array(str(tmp_path / "b.zarr"), shape=(5, 8, 8), chunks=(2, 8, 8), dtype="u1")
    a[:] = np.arange(5 * 64, dtype=np.uint8).reshape(5, 8, 8)
    reader = WindowReader(a)
    assert reader.layout is None  # unsharded: not the layout the fast path knows
    for w in range(5):
        np.testing.assert_array_equal(reader.read(w), a[w])


def test_corrupt_shard_index_is_an_error(tmp_path: Path) -> None:
    path = write_window_store(tmp_path / "ds.zarr", {"a": "train"}, 32, 4)
    shard = path / "a" / "image" / "c" / "0" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside the index
    shard.write_bytes(bytes(raw))
    reader = WindowReader(WindowStore.open(str(path)).scene("a").image)
    with pytest.raises(OSError, match="checksum"):
        reader.read(0)


def test_gcs_store_goes_through_zarr(tmp_path: Path, gcs_bucket: str) -> None:
    from seg import fs as segfs

    local = write_window_store(tmp_path / "ds.zarr", {"a": "train"}, 32, 5)
    fs, _ = segfs.filesystem(gcs_bucket)
    fs.put(str(local), f"{gcs_bucket.removeprefix('gs://')}/wr/ds.zarr", recursive=True)
    remote = WindowStore.open(f"{gcs_bucket}/wr/ds.zarr").scene("a")
    here = WindowStore.open(str(local)).scene("a")
    for array, same in ((remote.image, here.image), (remote.mask, here.mask)):
        assert array is not None and same is not None
        reader = WindowReader(array)
        assert reader.layout is None  # not a local file: zarr reads it
        for w in range(5):
            np.testing.assert_array_equal(reader.read(w), same[w])
