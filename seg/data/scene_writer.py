"""`SceneWriter`: one scene's windows into the store, written a whole shard at a time, the scene
marked done last (so an interrupted scene is redone, never half-used)."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from seg.classes import IGNORE
from seg.data.schema import CHECKSUM, IMAGE_CODEC, MASK_CODEC, SceneAttrs


class SceneWriter:
    """Writes one scene's windows in whole shards, then marks the scene done.

    Arrays are created for the grid's maximum window count and trimmed by `finish()`, because
    windows skipped for nodata are only known while reading.
    """

    def __init__(
        self,
        root: zarr.Group,
        scene_id: str,
        *,
        max_windows: int,
        bands: int,
        size: int,
        dtype: np.dtype[Any],
        with_mask: bool,
        windows_per_shard: int,
    ) -> None:
        if scene_id in root:
            del root[scene_id]
        self.group = root.create_group(scene_id)
        self.per_shard = windows_per_shard
        n = max(max_windows, 1)
        self.image = self.group.create_array(
            "image",
            shape=(n, bands, size, size),
            chunks=(1, bands, size, size),
            shards=(windows_per_shard, bands, size, size),
            dtype=dtype,
            compressors=[IMAGE_CODEC, CHECKSUM],
            fill_value=0,
        )
        self.mask = (
            self.group.create_array(
                "mask",
                shape=(n, size, size),
                chunks=(1, size, size),
                shards=(windows_per_shard, size, size),
                dtype="uint8",
                compressors=[MASK_CODEC, CHECKSUM],
                fill_value=IGNORE,
            )
            if with_mask
            else None
        )
        self.window = self.group.create_array(
            "window", shape=(n, 4), chunks=(max(n, 1), 4), dtype="int32", fill_value=0
        )
        # Windows are copied straight into one of two shard buffers: one is filled while the
        # other is being encoded/uploaded by the background writer (at most one in flight).
        self._buffers = [
            (
                np.zeros((windows_per_shard, bands, size, size), dtype),  # (k, C, S, S)
                np.full((windows_per_shard, size, size), IGNORE, np.uint8) if with_mask else None,
            )
            for _ in range(2)
        ]
        self._current = 0
        self._count = 0  # windows in the current buffer
        self._windows: list[tuple[int, int, int, int]] = []
        self.written = 0
        self.nbytes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seg-shard-writer")
        self._pending: Future[None] | None = None

    def add(
        self, image: np.ndarray, mask: np.ndarray | None, window: tuple[int, int, int, int]
    ) -> None:
        """Queue one window: image (C, h, w) and mask (h, w) or None, h, w <= S (the rest is
        padding: image 0, mask 255), and its (row, col, height, width) in the scene."""
        block, masks = self._buffers[self._current]
        i, (h, w) = self._count, image.shape[-2:]
        full = (h, w) == block.shape[-2:]
        if not full:
            block[i] = 0
        block[i, :, :h, :w] = image
        if masks is not None:
            assert mask is not None, "this scene has masks: give one per window"
            if not full:
                masks[i] = IGNORE
            masks[i, :h, :w] = mask
        self._windows.append(window)
        self._count += 1
        if self._count == self.per_shard:
            self._flush()

    def _flush(self) -> None:
        if self._count == 0:
            return
        k = self._count
        block, masks = self._buffers[self._current]
        start, stop = self.written, self.written + k
        self.nbytes += block[:k].nbytes + (masks[:k].nbytes if masks is not None else 0)
        self._wait()  # the other buffer's block is written, so it can be refilled next
        self._pending = self._pool.submit(
            self._write, start, stop, block[:k], masks[:k] if masks is not None else None
        )
        self.written = stop
        self._current, self._count = 1 - self._current, 0

    def _write(self, start: int, stop: int, block: np.ndarray, masks: np.ndarray | None) -> None:
        self._target(self.image, block, start, 0)[start:stop] = block
        if self.mask is not None and masks is not None:
            self._target(self.mask, masks, start, IGNORE)[start:stop] = masks

    def _target(self, array: zarr.Array, block: np.ndarray, start: int, fill: int) -> zarr.Array:
        """`array`, or the same array without zarr's empty-chunk checks when `block` fills its
        shard (or ends the array) and none of its windows is all `fill`.

        Zarr compares the shard and then every window with the fill value (np.array_equal, ~25 ms
        per 12 MB shard: more than encoding it) to leave empty chunks out. A min/max per window
        answers the same question 100x faster; the bytes written are the same either way.
        """
        k = block.shape[0]
        top = np.iinfo(block.dtype).max if block.dtype.kind == "u" else None
        whole = k == self.per_shard or start + k == array.shape[0]  # else: unwritten chunks
        if not whole or start + k > array.shape[0] or fill not in (0, top):
            return array  # a shard with chunks left unwritten, or a fill min/max cannot test
        per_window = block.reshape(k, -1)  # (k, C*S*S)
        full = per_window.max(axis=1) > 0 if fill == 0 else per_window.min(axis=1) < fill
        return array.with_config({"write_empty_chunks": True}) if full.all() else array

    def _wait(self) -> None:
        """Wait for the block in flight; its error (if any) surfaces here."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Stop the background writer (after an error, without marking anything done)."""
        with contextlib.suppress(Exception):
            self._wait()
        self._pool.shutdown(wait=True)

    def finish(self, attrs: SceneAttrs) -> None:
        """Write what is buffered, trim arrays to the windows kept, then mark the scene done."""
        self._flush()
        self._wait()
        self._pool.shutdown(wait=True)
        n = self.written
        windows = np.asarray(self._windows, np.int32).reshape(-1, 4)
        if n == 0:
            # Zarr cannot hold a zero-length array in every backend; keep shape 0 explicitly.
            self.image.resize((0, *self.image.shape[1:]))
            if self.mask is not None:
                self.mask.resize((0, *self.mask.shape[1:]))
            self.window.resize((0, 4))
        else:
            self.image.resize((n, *self.image.shape[1:]))
            if self.mask is not None:
                self.mask.resize((n, *self.mask.shape[1:]))
            self.window.resize((n, 4))
            self.window[:] = windows
        self.group.attrs["scene"] = {**attrs.to_json(), "n_windows": n}
        # The marker is written last: a scene without it is redone on the next run.
        self.group.attrs["done"] = True
