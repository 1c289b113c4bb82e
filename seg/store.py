"""The zarr v3 window store, in one place.

Layout (all paths may be local or gs://)::

    ds.zarr/                         attrs["seg"]: format, version, size, stride, bands, classes,
                                                   splits {scene_id: train|val|test}
      <scene_id>/                    attrs["scene"]: source, crs (WKT), transform (6 floats, GDAL
                                                   order a,b,c,d,e,f), width, height, nodata,
                                                   dtype, tags, metadata, band stats accumulators,
                                                   counts; attrs["done"] = true is written last
        image   (N, C, S, S)         scene dtype; chunk = one window; shard = `windows_per_shard`;
                                     blosc-lz4 clevel 5 + byte shuffle (IMAGE_CODEC)
        mask    (N, S, S)            uint8 class ids, 255 = ignore (nodata, padding);
                                     blosc-lz4hc clevel 5 (MASK_CODEC); absent when the scene
                                     was tiled without labels
        window  (N, 4) int32         row_off, col_off, height, width (valid extent, before padding)

A window's georeference is `rasterio.windows.transform(Window(col_off, row_off, w, h), transform)`.
Band statistics are kept per scene as streaming accumulators (count, sum, sum of squares, min,
max) so any set of scenes (e.g. the train split) can be merged exactly into mean/std.

Codecs, chosen for the training loader, which decodes one window per item: imagery barely
compresses (aerial RGB: zstd+bitshuffle 0.77 of raw, lz4+shuffle 0.97) but zstd+bitshuffle
decodes a 256 px RGB window in 0.4 ms and lz4 in 0.03 ms (and encodes 14x faster). Masks are
mostly runs, so lz4hc still keeps them at ~1% of raw and decodes in ~0.01 ms. Stores written with
other blosc codecs (earlier versions used zstd+bitshuffle for both) read the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from seg import __version__
from seg import fs as segfs
from seg.bandstats import BandStats
from seg.errors import StoreError

__all__ = ["FORMAT", "IGNORE", "BandStats", "Scene", "SceneWriter", "WindowStore"]

FORMAT = "seg-window-store/1"
IGNORE = 255
# Why these: see the module docstring (read speed for the loader; masks still ~1% of raw).
IMAGE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle)
MASK_CODEC = BloscCodec(cname="lz4hc", clevel=5, shuffle=BloscShuffle.shuffle)


def _open_root(path: str, mode: Literal["r", "r+", "a", "w", "w-"]) -> zarr.Group:
    try:
        return zarr.open_group(
            str(path), mode=mode, storage_options=segfs.storage_options(path) or None
        )
    except (FileNotFoundError, KeyError) as exc:
        if segfs.is_remote(path) and mode != "r":  # e.g. the bucket does not exist
            raise segfs.unreachable(path, exc) from exc
        raise StoreError(
            f"{path} is not a seg window store (run `seg tile ... --out {path}`)"
        ) from exc
    except StoreError:
        raise
    except Exception as exc:
        if segfs.is_remote(path):
            raise segfs.unreachable(path, exc) from exc
        raise StoreError(f"cannot open window store {path}: {exc}") from exc


def _check_bucket(path: str) -> None:
    """A missing bucket is a clear error up front (writing into it would retry for a while)."""
    if not str(path).startswith("gs://"):
        return
    fs, p = segfs.filesystem(path)
    bucket = p.split("/", 1)[0]
    try:
        found = fs.exists(bucket)
    except Exception as exc:
        raise segfs.unreachable(path, exc) from exc
    if not found:
        raise StoreError(
            f"bucket gs://{bucket} does not exist or your credentials cannot see it; create it"
            f" (gcloud storage buckets create gs://{bucket}) or choose another --out"
        )


def _mapping(value: Any) -> dict[str, Any]:
    """A zarr attribute that holds a JSON object, as a dict ({} when absent)."""
    return dict(value) if isinstance(value, dict) else {}


class SceneWriter:
    """Writes one scene's windows in whole shards, then marks the scene done.

    Arrays are created for the grid's maximum window count and trimmed by `finish()`, because
    windows skipped for nodata are only known while reading.
    """

    def __init__(
        self,
        root: zarr.Group,
        scene_id: str,
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
            compressors=[IMAGE_CODEC],
            fill_value=0,
        )
        self.mask = (
            self.group.create_array(
                "mask",
                shape=(n, size, size),
                chunks=(1, size, size),
                shards=(windows_per_shard, size, size),
                dtype="uint8",
                compressors=[MASK_CODEC],
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

    def finish(self, attrs: dict[str, Any]) -> None:
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
        self.group.attrs["scene"] = {**attrs, "n_windows": n}
        # The marker is written last: a scene without it is redone on the next run.
        self.group.attrs["done"] = True


@dataclass
class Scene:
    """Read access to one scene of a store. Arrays are opened lazily; nothing is loaded."""

    scene_id: str
    group: zarr.Group

    @property
    def attrs(self) -> dict[str, Any]:
        return _mapping(self.group.attrs.get("scene"))

    @property
    def image(self) -> zarr.Array:
        return self.group["image"]  # type: ignore[return-value]

    @property
    def mask(self) -> zarr.Array | None:
        return self.group["mask"] if "mask" in self.group else None  # type: ignore[return-value]  # noqa: SIM401

    @property
    def windows(self) -> np.ndarray:
        return np.asarray(self.group["window"][:])  # type: ignore[index]

    def __len__(self) -> int:
        return int(self.attrs["n_windows"])

    @property
    def band_stats(self) -> BandStats:
        return BandStats.from_json(self.attrs["band_stats"])

    def window_transform(self, index: int) -> Any:
        """The affine transform of window `index` (rebuilt from scene transform + offsets)."""
        from affine import Affine
        from rasterio.windows import Window as RioWindow
        from rasterio.windows import transform as window_transform

        r, c, h, w = (int(x) for x in self.windows[index])
        return window_transform(RioWindow(c, r, w, h), Affine(*self.attrs["transform"]))


class WindowStore:
    """A seg window store: the root group plus typed access to its settings and scenes."""

    def __init__(self, path: str, root: zarr.Group) -> None:
        self.path = path
        self.root = root

    @classmethod
    def open(cls, path: str) -> WindowStore:
        """Open an existing store for reading; clear error if it is missing or not ours."""
        if not segfs.exists(segfs.join(path, "zarr.json")):
            raise StoreError(
                f"no window store at {path} (run `seg tile SCENES --out {path}` first)"
            )
        root = _open_root(path, "r")
        if _mapping(root.attrs.get("seg")).get("format") != FORMAT:
            raise StoreError(f"{path} is a zarr store but not a seg window store")
        return cls(path, root)

    @classmethod
    def create_or_open(
        cls, path: str, settings: dict[str, Any], overwrite: bool = False
    ) -> WindowStore:
        """Open a store to add scenes to, creating it; settings must match an existing store."""
        _check_bucket(path)
        exists = segfs.exists(segfs.join(path, "zarr.json"))
        if exists and not overwrite:
            root = _open_root(path, "r+")
            have = _mapping(root.attrs.get("seg"))
            if have.get("format") != FORMAT:
                raise StoreError(
                    f"{path} exists and is not a seg window store; choose another --out"
                )
            for key in ("size", "stride", "bands", "classes"):
                if key in settings and have.get(key) != settings[key]:
                    raise StoreError(
                        f"{path} was tiled with {key}={have.get(key)!r}, not {settings[key]!r};"
                        " use the same settings, another --out, or --overwrite"
                    )
            return cls(path, root)
        root = _open_root(path, "w")
        root.attrs["seg"] = {"format": FORMAT, "version": __version__, "splits": {}, **settings}
        return cls(path, root)

    @property
    def settings(self) -> dict[str, Any]:
        return _mapping(self.root.attrs.get("seg"))

    @property
    def classes(self) -> list[str]:
        return list(self.settings.get("classes") or [])

    @property
    def splits(self) -> dict[str, str]:
        return dict(self.settings.get("splits") or {})

    def set_splits(self, splits: dict[str, str]) -> None:
        self.root.attrs["seg"] = {**self.settings, "splits": {**self.splits, **splits}}

    def update_settings(self, **values: Any) -> None:
        self.root.attrs["seg"] = {**self.settings, **values}

    def is_done(self, scene_id: str) -> bool:
        return scene_id in self.root and bool(self.root[scene_id].attrs.get("done", False))

    def scene_ids(self, split: str | None = None) -> list[str]:
        """Done scenes (sorted), optionally only those of one split."""
        ids = sorted(k for k, g in self.root.groups() if g.attrs.get("done", False))
        if split is not None:
            splits = self.splits
            ids = [s for s in ids if splits.get(s) == split]
        return ids

    def scene(self, scene_id: str) -> Scene:
        if not self.is_done(scene_id):
            raise StoreError(f"scene {scene_id!r} is not (completely) in {self.path}")
        return Scene(scene_id, self.root[scene_id])  # type: ignore[arg-type]

    def scenes(self, split: str | None = None) -> list[Scene]:
        return [self.scene(s) for s in self.scene_ids(split)]

    def band_stats(self, scene_ids: Iterable[str] | None = None) -> BandStats:
        """Exact band statistics merged over `scene_ids` (default: all done scenes)."""
        ids = list(scene_ids) if scene_ids is not None else self.scene_ids()
        if not ids:
            raise StoreError(f"{self.path} has no finished scenes to compute band statistics from")
        stats = [self.scene(s).band_stats for s in ids]
        out = stats[0]
        for s in stats[1:]:
            out = out.merge(s)
        return out

    def scene_writer(
        self,
        scene_id: str,
        max_windows: int,
        bands: int,
        size: int,
        dtype: np.dtype[Any],
        with_mask: bool,
        windows_per_shard: int = 16,
    ) -> SceneWriter:
        return SceneWriter(
            self.root, scene_id, max_windows, bands, size, dtype, with_mask, windows_per_shard
        )
