"""Per-window checksums in the store, and `seg check STORE` reading every window back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import write_window_store

from seg.data.store import WindowStore
from seg.data.window_reader import WindowReader

Run = Callable[..., tuple[int, str, str]]


def flip_one_bit(store: Path, scene: str = "a", array: str = "image") -> Path:
    """One bit in the middle of the first window's chunk of the scene's first shard (found
    through the shard index at the shard's end: (offset, nbytes) per window, then a CRC32C)."""
    import json

    meta = json.loads((store / scene / array / "zarr.json").read_text())
    per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
    shard = sorted(p for p in (store / scene / array / "c").rglob("*") if p.is_file())[0]
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(bytes(data[-(16 * per_shard + 4) : -4]), "<u8").reshape(-1, 2)
    offset, nbytes = (int(x) for x in index[0])
    data[offset + nbytes // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    return shard


def test_one_flipped_bit_is_an_error_on_both_read_paths(tmp_path: Path) -> None:
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train"}, windows=4)
    image = WindowStore.open(str(store)).scene("a").image
    before = [WindowReader(image).read(w) for w in range(4)]
    flip_one_bit(store)
    fast = WindowReader(image)  # the training loader's direct shard read
    with pytest.raises(OSError, match="CRC32C"):
        fast.read(0)
    np.testing.assert_array_equal(fast.read(1), before[1])  # the other windows still read
    with pytest.raises(Exception, match=r"(?i)crc32c|checksum"):
        np.asarray(zarr.open_array(str(store / "a" / "image"), mode="r")[0])  # through zarr


def test_check_a_sound_store(tmp_path: Path, seg_run: Run) -> None:
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    code, out, err = seg_run("check", store, "-q")
    assert code == 0, err
    assert "checked: 2 scenes, 8 windows, all readable" in out
    assert "without per-window checksums" not in out


def test_check_names_the_damaged_window(tmp_path: Path, seg_run: Run) -> None:
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    flip_one_bit(store, "b", "mask")
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    code, out, err = seg_run("check", store, "-q")
    assert code == 1 and err.strip().splitlines() == [err.strip()], err
    assert "1 damaged window(s) in scene(s) ['b']" in err and "--overwrite" in err
    assert "damaged: scene 'b' window 0 (mask)" in out and "CRC32C" in out
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before  # only read


def test_check_not_a_store_is_one_line(tmp_path: Path, seg_run: Run) -> None:
    (tmp_path / "notes").mkdir()
    code, _, err = seg_run("check", tmp_path / "notes", "-q")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "seg: error:" in err, err
