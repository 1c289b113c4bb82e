"""`tile_scenes()`: GeoTIFF scenes (+ labels) -> a zarr window store, idempotent and resumable.

Every input is checked before anything is written, so a bad scene or label stops the run with
one clear error and an untouched store. Each scene is then written whole (see store.SceneWriter)
and marked done last: a re-run skips done scenes and redoes an interrupted one from scratch, so
killing the process at any moment and re-running gives the same store as one clean run.
"""

from __future__ import annotations

import contextvars
import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import rasterio

from seg import fs as segfs
from seg.classes import IGNORE
from seg.data.splits import BLOCKS, assign_splits, block_split
from seg.data.store import BandStats, SceneAttrs, WindowStore
from seg.data.tile_inputs import Prepared, check_classes, check_inputs, resolve_labels
from seg.errors import InputError, ResourceError, SegError
from seg.geo.grid import axis_offsets, check_geometry, windows
from seg.geo.labels import SceneLabels, stem
from seg.geo.raster import (
    READ_ERRORS,
    SceneInfo,
    damaged,
    expand_inputs,
    open_raster,
    read_strip,
)
from seg.locks import FolderLock
from seg.report import SILENT, Bar, Reporter
from seg.shards import Shard
from seg.tile_config import TileConfig


@dataclass
class TileSummary:
    scenes: int = 0  # scenes in this shard
    tiled: int = 0
    already_done: int = 0
    windows: int = 0
    skipped: int = 0  # windows over the nodata limit
    bytes: int = 0  # uncompressed pixels + masks written
    seconds: float = 0.0
    store: str = ""
    per_scene: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.scenes} scenes ({self.tiled} tiled, {self.already_done} already done),"
            f" {self.windows} windows, {self.skipped} skipped (nodata),"
            f" {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s -> {self.store}"
        )


def tile_scenes(
    scenes: list[str],
    out: str,
    cfg: TileConfig | None = None,
    *,
    labels: str | None = None,
    overwrite: bool = False,
    shard: Shard | None = None,
    reporter: Reporter = SILENT,
) -> TileSummary:
    """Tile `scenes` (files, folders, globs, gs://) into the window store at `out`."""
    cfg = cfg or TileConfig()
    if cfg.stride is None:
        cfg = cfg.model_copy(update={"stride": cfg.size})
    shard = shard or Shard()
    started = time.perf_counter()
    stride = cfg.stride if cfg.stride is not None else cfg.size
    check_geometry(cfg.size, stride, cfg.allow_gaps)
    paths, label_of = resolve_labels(expand_inputs(scenes), labels, cfg)
    ids = [stem(p) for p in paths]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"scene ids (file stems) must be unique; repeated: {', '.join(dupes[:5])}")
    splits = assign_splits(ids, cfg.splits)
    prepared = check_inputs(shard.pick(paths), label_of, cfg, reporter)
    # Sharded, --overwrite redoes this shard's scenes but never wipes the store the other machines
    # are writing into; unsharded, it starts the store over.
    # On a failure, remove the store only if this run made it (or was asked to start it over);
    # a folder that was there before (empty: seg refuses any other) is left as it was.
    fresh = (overwrite and not shard.sharded) or not segfs.exists(segfs.join(out, "zarr.json"))
    existed = segfs.exists(out)
    # Unsharded, one `seg tile` at a time writes into a store (two would interleave windows).
    lock = FolderLock(out, "seg tile", enabled=not shard.sharded)
    if lock.path:
        os.makedirs(out, exist_ok=True)
    lock.acquire()
    try:
        store = _open_store(out, cfg, prepared, overwrite and not shard.sharded)
        store.set_splits(splits)
        summary = TileSummary(scenes=len(prepared), store=out)
        with (
            rasterio.Env(GDAL_CACHEMAX=_block_cache(prepared, cfg.size)),
            reporter.bar("scenes", len(prepared)) as scenes_bar,
            reporter.bar("windows", 0) as windows_bar,
        ):
            for scene_id, info, lab in prepared:
                if store.is_done(scene_id) and not overwrite:
                    summary.already_done += 1
                    scenes_bar.advance()
                    continue
                windows_bar.reset(len(windows(info.height, info.width, cfg.size, stride)), scene_id)
                try:
                    _tile_one(
                        store,
                        scene_id,
                        info,
                        lab=lab,
                        cfg=cfg,
                        split=splits.get(scene_id),
                        summary=summary,
                        bar=windows_bar,
                    )
                except (SegError, OSError, *READ_ERRORS) as exc:
                    _roll_back(store, scene_id, out, fresh=fresh, existed=existed)
                    raise _as_seg_error(exc, info.path, out) from exc
                summary.tiled += 1
                scenes_bar.advance()
    finally:
        lock.release()
        if lock.path and not existed and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # refused before writing anything: leave no folder either
    summary.seconds = time.perf_counter() - started
    return summary


def _open_store(out: str, cfg: TileConfig, prepared: list[Prepared], wipe: bool) -> WindowStore:
    settings = {
        "size": cfg.size,
        "stride": cfg.stride,
        "bands": cfg.bands or "all",
        "classes": cfg.classes,
    }
    store = WindowStore.create_or_open(out, settings, overwrite=wipe)
    if prepared:
        have = store.settings.get("n_bands")
        want = len(prepared[0][1].bands)
        if have is not None and have != want:
            raise InputError(
                f"{out} holds {have}-band windows, these scenes give {want}; use --bands"
            )
        store.update_settings(n_bands=want, max_nodata=cfg.max_nodata)
    return store


def _block_cache(prepared: list[Prepared], size: int) -> int:
    """GDAL's block cache (5 % of RAM by default) would otherwise keep every block of a big
    scene; a few strips of windows are all that is ever re-read (overlapping strips)."""
    strip_bytes = max(
        (i.width * size * len(i.bands) * np.dtype(i.dtype).itemsize for _, i, _ in prepared),
        default=0,
    )
    return max(64 * 2**20, 3 * strip_bytes)


def _as_seg_error(exc: BaseException, path: str, out: str) -> BaseException:
    """What the user is told when writing a scene failed (the scene was rolled back)."""
    if isinstance(exc, SegError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ResourceError(f"no space left writing {out}; free space or choose another --out")
    if isinstance(exc, OSError) and not isinstance(exc, READ_ERRORS):
        return exc  # a bug or an unexpected system error: keep its traceback
    return damaged(path, exc)


def _roll_back(store: WindowStore, scene_id: str, out: str, *, fresh: bool, existed: bool) -> None:
    """After a failed scene: remove it, and the whole store if this run made it empty."""
    if scene_id in store.root:
        del store.root[scene_id]
    if fresh and not store.scene_ids():  # a store this run made: leave nothing
        fs, path = segfs.filesystem(out)
        fs.rm(path, recursive=True)
        if existed and not segfs.is_remote(out):
            fs.makedirs(path, exist_ok=True)  # the (empty) folder the user gave


def _tile_one(
    store: WindowStore,
    scene_id: str,
    info: SceneInfo,
    *,
    lab: SceneLabels | None,
    cfg: TileConfig,
    split: str | None,
    summary: TileSummary,
    bar: Bar,
) -> None:
    size = cfg.size
    stride = cfg.stride if cfg.stride is not None else size
    rows = axis_offsets(info.height, size, stride)
    cols = axis_offsets(info.width, size, stride)
    dtype = np.dtype(info.dtype)
    writer = store.scene_writer(
        scene_id,
        max_windows=len(rows) * len(cols),
        bands=len(info.bands),
        size=size,
        dtype=dtype,
        with_mask=lab is not None,
        windows_per_shard=cfg.windows_per_shard,
    )
    stats = BandStats.empty(len(info.bands))
    counted = 0  # scene rows already in the band statistics (strips overlap when stride < size)
    kept = skipped = 0
    placed: list[tuple[int, int, int, int]] = []  # the stored windows, in order
    with open_raster(info.path) as ds, ThreadPoolExecutor(1, "seg-strip-reader") as reader:

        def load(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            """image (C, h, W), valid (h, W), labels (h, W) of the strip at row r."""
            h = min(size, info.height - r)
            image, valid = read_strip(ds, info, r, h)
            return image, valid, (lab.strip(r, h) if lab is not None else None)

        # The next strip is read (GDAL releases the GIL) while this one is cut and written. The
        # reader runs in a copy of this context: rasterio keeps gs:// openers in a ContextVar.
        ctx = contextvars.copy_context()
        pending = reader.submit(ctx.run, load, rows[0])
        try:
            for k, r in enumerate(rows):
                image, valid, labels = pending.result()
                if k + 1 < len(rows):
                    pending = reader.submit(ctx.run, load, rows[k + 1])
                h = image.shape[1]
                if counted < r + h:
                    new = slice(max(counted - r, 0), h)
                    stats.update(image[:, new], valid[new])
                    counted = r + h
                if labels is not None:
                    check_classes(labels, cfg.classes, lab)
                strip_valid = bool(valid.all())
                if not strip_valid:
                    image, labels = _blank_nodata(image, valid, labels)
                for c in cols:
                    w = min(size, info.width - c)
                    if (
                        not strip_valid
                        and 1.0 - np.count_nonzero(valid[:, c : c + w]) / (h * w) > cfg.max_nodata
                    ):
                        skipped += 1
                        bar.advance()
                        continue
                    # Views of the strip; the writer copies them into its shard buffer and pads.
                    mask = labels[:, c : c + w] if labels is not None else None
                    writer.add(image[:, :, c : c + w], mask, (r, c, h, w))
                    placed.append((r, c, h, w))
                    kept += 1
                    bar.advance()
        except BaseException:
            writer.close()
            raise
    labels_desc = lab.describe() if lab is not None else None
    attrs = SceneAttrs.of_scene(info, stats, labels=labels_desc, split=split, skipped=skipped)
    if split == BLOCKS:
        try:
            attrs = replace(attrs, window_splits=block_split(placed, size, cfg.splits, scene_id))
        except BaseException:
            writer.close()
            raise
    writer.finish(attrs)
    summary.windows += kept
    summary.skipped += skipped
    summary.bytes += writer.nbytes
    summary.per_scene[scene_id] = kept


def _blank_nodata(
    image: np.ndarray, valid: np.ndarray, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Nodata is not fed to the model: image 0 in every band, mask IGNORE (the rule that
    `seg.data.window_prep.store_valid` reads back)."""
    # Flat indexes of the (usually few) invalid pixels: cheaper than a boolean mask.
    invalid = np.flatnonzero(~valid)  # (n_invalid,) into h*W
    image = np.ascontiguousarray(image)  # so that reshape gives a view
    image.reshape(image.shape[0], -1)[:, invalid] = 0  # (C, h*W) view
    if labels is not None:
        labels = np.ascontiguousarray(labels)
        labels.reshape(-1)[invalid] = IGNORE
    return image, labels
