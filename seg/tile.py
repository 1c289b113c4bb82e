"""`tile_scenes()`: GeoTIFF scenes (+ labels) -> a zarr window store, idempotent and resumable.

Every input is checked before anything is written, so a bad scene or label stops the run with
one clear error and an untouched store. Each scene is then written whole (see store.SceneWriter)
and marked done last: a re-run skips done scenes and redoes an interrupted one from scratch, so
killing the process at any moment and re-running gives the same store as one clean run.
"""

from __future__ import annotations

import contextvars
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seg import fs as segfs
from seg.config import TileConfig
from seg.errors import ConfigError, InputError, SegError
from seg.grid import axis_offsets, check_geometry, windows
from seg.labels import SceneLabels, is_vector, match_labels, stem
from seg.raster import SceneInfo, expand_inputs, open_raster, read_strip, scene_info
from seg.splits import assign_splits
from seg.store import IGNORE, BandStats, WindowStore
from seg.vectors import VectorLabels


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


def _resolve_labels(
    paths: list[str], labels: str | None, cfg: TileConfig
) -> tuple[list[str], dict[str, str | VectorLabels]]:
    """Scenes left after taking label files out, and each scene's label source."""
    if labels is None:
        if cfg.labels_map:
            return paths, {p: cfg.labels_map[stem(p)] for p in paths if stem(p) in cfg.labels_map}
        return paths, {}
    if is_vector(labels):
        vec = VectorLabels.load(
            labels, cfg.label_attr, cfg.classes, cfg.label_crs, cfg.label_buffer
        )
        return paths, {p: vec for p in paths}
    files = expand_inputs([labels])
    fs, p = segfs.filesystem(labels)
    if not fs.isdir(p):  # one label raster
        scenes = [s for s in paths if s not in files]
        if len(scenes) != 1:
            raise InputError(
                f"--labels {labels} is one raster but {len(scenes)} scenes were given; pass a"
                " folder of label rasters (matched by name) or one scene"
            )
        return scenes, {scenes[0]: files[0]}
    scenes, matched = match_labels(paths, files, cfg.labels_map)
    return scenes, dict(matched)


def _shard(items: list[str], index: int | None, count: int | None) -> list[str]:
    if index is None and count is None:
        return items
    count = 1 if count is None else count
    index = 0 if index is None else index
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard-index {index} must be in 0..{count - 1} (--shard-count {count})"
        )
    return items[index::count]


def _json_safe(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else str(x)


def tile_scenes(
    scenes: list[str],
    out: str,
    cfg: TileConfig | None = None,
    labels: str | None = None,
    overwrite: bool = False,
    shard_index: int | None = None,
    shard_count: int | None = None,
    progress: bool = True,
) -> TileSummary:
    """Tile `scenes` (files, folders, globs, gs://) into the window store at `out`."""
    cfg = cfg or TileConfig()
    if cfg.stride is None:
        cfg = cfg.model_copy(update={"stride": cfg.size})
    started = time.perf_counter()
    stride = cfg.stride if cfg.stride is not None else cfg.size
    check_geometry(cfg.size, stride, cfg.allow_gaps)
    paths = expand_inputs(scenes)
    paths, label_of = _resolve_labels(paths, labels, cfg)
    ids = [stem(p) for p in paths]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"scene ids (file stems) must be unique; repeated: {', '.join(dupes[:5])}")
    splits = assign_splits(ids, cfg.splits)
    mine = _shard(paths, shard_index, shard_count)

    # Check every input of this shard before writing anything.
    prepared: list[tuple[str, SceneInfo, SceneLabels | None]] = []
    for p in mine:
        with open_raster(p) as ds:
            info = scene_info(ds, p, cfg.bands, cfg.pixel_space)
        lab = SceneLabels(info, label_of[p]) if p in label_of else None
        prepared.append((stem(p), info, lab))
    n_bands = {len(info.bands) for _, info, _ in prepared}
    if len(n_bands) > 1:
        raise InputError(
            f"scenes have different band counts {sorted(n_bands)}; choose the same bands for all"
            " with --bands (a store holds one channel count)"
        )

    settings = {
        "size": cfg.size,
        "stride": cfg.stride,
        "bands": cfg.bands or "all",
        "classes": cfg.classes,
    }
    # Sharded, --overwrite redoes this shard's scenes but never wipes the store the other machines
    # are writing into; unsharded, it starts the store over.
    sharded = (shard_count or 1) > 1
    fresh = (overwrite and not sharded) or not segfs.exists(segfs.join(out, "zarr.json"))
    store = WindowStore.create_or_open(out, settings, overwrite=overwrite and not sharded)
    if prepared:
        have = store.settings.get("n_bands")
        want = len(prepared[0][1].bands)
        if have is not None and have != want:
            raise InputError(
                f"{out} holds {have}-band windows, these scenes give {want}; use --bands"
            )
        store.update_settings(n_bands=want, max_nodata=cfg.max_nodata)
    store.set_splits(splits)

    summary = TileSummary(scenes=len(prepared), store=out)
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # GDAL's block cache (5 % of RAM by default) would otherwise keep every block of a big scene;
    # a few strips of windows are all that is ever re-read (overlapping strips).
    strip_bytes = max(
        (i.width * cfg.size * len(i.bands) * np.dtype(i.dtype).itemsize for _, i, _ in prepared),
        default=0,
    )
    cache = max(64 * 2**20, 3 * strip_bytes)
    with (
        rasterio.Env(GDAL_CACHEMAX=cache),
        Progress(*cols, console=Console(stderr=True), disable=not progress) as bar,
    ):
        t_scenes = bar.add_task("scenes", total=len(prepared))
        t_windows = bar.add_task("windows", total=0)
        for scene_id, info, lab in prepared:
            if store.is_done(scene_id) and not overwrite:
                summary.already_done += 1
                bar.advance(t_scenes)
                continue
            grid = windows(info.height, info.width, cfg.size, stride)
            bar.reset(t_windows, total=len(grid), description=f"windows {scene_id}")
            try:
                _tile_one(
                    store, scene_id, info, lab, cfg, splits.get(scene_id), summary, bar, t_windows
                )
            except SegError:
                if scene_id in store.root:
                    del store.root[scene_id]
                if fresh and not store.scene_ids():  # a store this run made: leave nothing
                    fs, path = segfs.filesystem(out)
                    fs.rm(path, recursive=True)
                raise
            summary.tiled += 1
            bar.advance(t_scenes)
    summary.seconds = time.perf_counter() - started
    return summary


def _tile_one(
    store: WindowStore,
    scene_id: str,
    info: SceneInfo,
    lab: SceneLabels | None,
    cfg: TileConfig,
    split: str | None,
    summary: TileSummary,
    bar: Progress,
    task: Any,
) -> None:
    size = cfg.size
    stride = cfg.stride if cfg.stride is not None else size
    rows = axis_offsets(info.height, size, stride)
    cols = axis_offsets(info.width, size, stride)
    dtype = np.dtype(info.dtype)
    writer = store.scene_writer(
        scene_id,
        len(rows) * len(cols),
        len(info.bands),
        size,
        dtype,
        lab is not None,
        cfg.windows_per_shard,
    )
    stats = BandStats.empty(len(info.bands))
    counted = 0  # scene rows already in the band statistics (strips overlap when stride < size)
    kept = skipped = 0
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
                strip_valid = bool(valid.all())
                if not strip_valid:  # nodata is not fed to the model: image 0, mask 255
                    # Flat indexes of the (usually few) invalid pixels: cheaper than a mask.
                    invalid = np.flatnonzero(~valid)  # (n_invalid,) into h*W
                    image = np.ascontiguousarray(image)  # so that reshape gives a view
                    image.reshape(image.shape[0], -1)[:, invalid] = 0  # (C, h*W) view
                    if labels is not None:
                        labels = np.ascontiguousarray(labels)
                        labels.reshape(-1)[invalid] = IGNORE
                for c in cols:
                    w = min(size, info.width - c)
                    if (
                        not strip_valid
                        and 1.0 - np.count_nonzero(valid[:, c : c + w]) / (h * w) > cfg.max_nodata
                    ):
                        skipped += 1
                        bar.advance(task)
                        continue
                    # Views of the strip; the writer copies them into its shard buffer and pads.
                    mask = labels[:, c : c + w] if labels is not None else None
                    writer.add(image[:, :, c : c + w], mask, (r, c, h, w))
                    kept += 1
                    bar.advance(task)
        except BaseException:
            writer.close()
            raise
    attrs = {
        "source": info.path,
        "crs": info.crs_wkt,
        "transform": list(info.transform),
        "width": info.width,
        "height": info.height,
        "nodata": _json_safe(info.nodata),
        "dtype": info.dtype,
        "bands": info.bands,
        "band_names": info.band_names,
        "pixel_space": info.pixel_space,
        "tags": info.tags,
        "metadata": info.metadata,
        "labels": lab.describe() if lab is not None else None,
        "split": split,
        "band_stats": stats.to_json(),
        "skipped_windows": skipped,
    }
    writer.finish(attrs)
    summary.windows += kept
    summary.skipped += skipped
    summary.bytes += writer.nbytes
    summary.per_scene[scene_id] = kept
