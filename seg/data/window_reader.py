"""Reads single windows of a store array, fast for local stores.

Going through zarr costs 1-2 ms per window read (its async machinery hands each read to its own
event-loop thread and back), several times the decode itself; a training loader reads one window
per item, so that overhead alone made it 3x slower than reading from memory. For the layout
`seg.data.store.SceneWriter` writes -- a local zarr v3 array whose shards hold one window per inner
chunk, shard index at the end, bytes + optional blosc inner codecs -- this reads the window's
chunk straight from its shard file: the shard index (checked against its CRC32C once per shard),
then one ranged read of the chunk, its own CRC32C checked (stores since checksums), then blosc
decode. Anything else (gs:// stores, other codecs
or chunkings) goes through zarr unchanged, so the fast path never changes what is read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.storage import LocalStore

EMPTY = np.uint64(2**64 - 1)  # a shard index entry for a chunk that was never written


class WindowReader:
    """`read(w)` -> window w of `array` along axis 0, as a numpy array of shape shape[1:]."""

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.layout = _local_layout(array)
        self._indexes: dict[int, np.ndarray] = {}  # shard number -> (k, 2) offset, nbytes

    def read(self, w: int) -> np.ndarray:
        if self.layout is None:
            return np.asarray(self.array[w])
        lay = self.layout
        shard, j = divmod(w, lay.per_shard)
        path = lay.shard_path(shard)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # a shard never written holds only the fill value
            return lay.filled()
        try:
            if shard not in self._indexes:
                self._indexes[shard] = lay.read_index(fd, path)
            index = self._indexes[shard]
            if index[j, 0] == EMPTY:
                return lay.filled()
            offset, nbytes = (int(x) for x in index[j])
            data = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        return lay.decode(data)


class _Layout:
    """Where and how a local sharded array stores its windows."""

    def __init__(self, root: Path, meta: dict[str, Any], array: zarr.Array) -> None:
        shard = meta["codecs"][0]["configuration"]
        self.root = root
        self.per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.ndim = len(array.shape)
        self.window_shape = tuple(int(x) for x in array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self.stored = self.dtype.newbyteorder("<")  # "bytes" codec is little-endian
        self.fill_value = array.fill_value
        names = [c["name"] for c in shard["codecs"]]
        self.compressed = "blosc" in names
        self.checksummed = names[-1] == "crc32c"

    def shard_path(self, shard: int) -> str:
        # Default chunk key encoding, "/" separator: c/<shard>/0/0... (one shard across the rest).
        return str(self.root.joinpath("c", str(shard), *(["0"] * (self.ndim - 1))))

    def read_index(self, fd: int, path: str) -> np.ndarray:
        """The shard's (k, 2) uint64 index of (offset, nbytes)."""
        size = os.fstat(fd).st_size
        n = self.per_shard * 16 + 4
        if size < n:
            raise OSError(f"shard {path} is truncated ({size} bytes)")
        raw = os.pread(fd, n, size - n)
        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise OSError(f"shard index of {path} fails its checksum (a corrupt store?)")
        return np.frombuffer(raw[:-4], "<u8").reshape(self.per_shard, 2)

    def filled(self) -> np.ndarray:
        return np.full(self.window_shape, self.fill_value, self.dtype)

    def decode(self, data: bytes) -> np.ndarray:
        if self.checksummed:
            data, crc = data[:-4], data[-4:]
            if google_crc32c.value(data) != int.from_bytes(crc, "little"):
                raise OSError("its chunk fails its CRC32C checksum (damaged bytes)")
        out = np.empty((1, *self.window_shape), self.stored)
        if self.compressed:
            blosc.decompress(data, out)
        else:
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)
        return out[0].astype(self.dtype, copy=False)


def _local_layout(array: zarr.Array) -> _Layout | None:
    """The array's layout when it is exactly the one the fast path reads, else None."""
    store = array.store
    if not isinstance(store, LocalStore) or array.metadata.zarr_format != 3:
        return None
    meta: dict[str, Any] = dict(array.metadata.to_dict())
    key = meta.get("chunk_key_encoding", {})
    codecs = meta.get("codecs", [])
    if key.get("name") != "default" or key.get("configuration", {}).get("separator") != "/":
        return None
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    cfg = codecs[0]["configuration"]
    shape, outer = list(array.shape), meta["chunk_grid"]["configuration"]["chunk_shape"]
    if (
        len(shape) < 2
        or list(outer[1:]) != shape[1:]
        or list(cfg["chunk_shape"]) != [1, *shape[1:]]
        or cfg.get("index_location", "end") != "end"
        or [c["name"] for c in cfg["index_codecs"]] != ["bytes", "crc32c"]
        or cfg["index_codecs"][0].get("configuration", {}).get("endian", "little") != "little"
    ):
        return None
    inner = cfg["codecs"]
    names = [c["name"] for c in inner]
    if names[-1:] == ["crc32c"]:
        names = names[:-1]
    if names not in (["bytes"], ["bytes", "blosc"]):
        return None
    dtype = np.dtype(array.dtype)
    endian = inner[0].get("configuration", {}).get("endian", "little")
    if endian != "little" or (dtype.itemsize > 1 and sys.byteorder != "little"):
        return None
    return _Layout(Path(store.root) / array.path, meta, array)
