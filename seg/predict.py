"""`predict_scenes()`: GeoTIFF scenes -> class masks on exactly each scene's grid.

Per scene: overlapping windows from `seg.grid.windows` (the last row/column shifted in; one padded
window where the scene is smaller), read a strip of rows at a time, normalised with the
checkpoint's band statistics, batched through the network, blended by `seg.stitch.Stitcher` and
written strip by strip by `seg.outputs.SceneOutputs`. Memory depends on the scene width and the
window size, never on the height.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seg import fs as segfs
from seg.errors import ConfigError, InputError
from seg.grid import Window, check_geometry, windows
from seg.labels import stem
from seg.outputs import SceneOutputs, check_writable, output_paths
from seg.pipeline import Behind, prefetch, return_freed_memory
from seg.predictor import Predictor, load_predictor
from seg.raster import SceneInfo, expand_inputs, open_raster, read_strip, scene_info
from seg.stitch import Sink, Stitcher

# read(row_off, height, col_off, width) -> image (C, height, width) raw pixels, valid bool
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class PredictSummary:
    scenes: int = 0
    predicted: int = 0
    skipped: int = 0  # outputs existed and --overwrite was not given
    windows: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenes} scenes ({self.predicted} predicted, {self.skipped} skipped: output"
            f" exists), {self.windows} windows, {self.seconds:.1f} s"
        )


def padded(x: np.ndarray, size: int) -> np.ndarray:
    """(C, h, w) -> (C, size, size), mirrored beyond the valid extent so the network sees
    plausible context (only a scene smaller than a window needs this; the padding is cropped)."""
    _, h, w = x.shape
    if h == size and w == size:
        return x
    mode = "reflect" if h > 1 and w > 1 else "edge"
    return np.pad(x, ((0, 0), (0, size - h), (0, size - w)), mode=mode)  # type: ignore[call-overload]


def batches(
    read: WindowReader,
    height: int,
    width: int,
    size: int,
    stride: int,
    predictor: Predictor,
    batch_size: int,
) -> Iterator[tuple[list[Window], np.ndarray, list[np.ndarray]]]:
    """Windows in row-major order, grouped in batches: (windows, (B, C, S, S) float32, valid)."""
    grid = windows(height, width, size, stride)
    wins: list[Window] = []
    xs: list[np.ndarray] = []
    valids: list[np.ndarray] = []
    for win in grid:
        # One read per window: input memory stays per window, whatever the scene's width;
        # GDAL's block cache (see block_cache) serves the overlap with the previous window.
        image, v = read(win.row_off, win.height, win.col_off, win.width)  # (C, h, w), (h, w)
        wins.append(win)
        xs.append(padded(predictor.normalise(image, v), size))
        valids.append(v)
        if len(wins) == batch_size:
            yield wins, np.stack(xs), valids
            wins, xs, valids = [], [], []
    if wins:
        yield wins, np.stack(xs), valids


def stitch_scene(
    read: WindowReader,
    height: int,
    width: int,
    size: int,
    overlap: int,
    predictor: Predictor,
    num_classes: int,
    sink: Sink,
    batch_size: int = 4,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Predict every window of a `height` x `width` scene and hand stitched rows to `sink`."""
    stride = size - overlap
    stitcher = Stitcher(height, width, num_classes, size, overlap, sink)

    def blend(wins: list[Window], probs: np.ndarray, valids: list[np.ndarray]) -> None:
        top = stitcher.top
        for win, p, v in zip(wins, probs, valids, strict=True):
            stitcher.add(win, p, v)
        if stitcher.top != top:  # a row of windows is done: its buffers are free
            return_freed_memory()

    # Reading runs one batch ahead and blending + writing one behind the network (seg.pipeline).
    behind = Behind()
    n = 0
    try:
        grid = batches(read, height, width, size, stride, predictor, batch_size)
        for wins, x, valids in prefetch(grid):
            probs = predictor(x)  # (B, K, S, S)
            behind.submit(functools.partial(blend, wins, probs, valids))
            n += len(wins)
            if advance is not None:
                advance(len(wins))
        behind.submit(stitcher.finish)
    except BaseException:
        behind.abort()
        raise
    behind.close()
    return n


def check_scene(info: SceneInfo, ckpt: dict[str, Any], bands_given: bool) -> None:
    """Refuse a scene the checkpoint was not trained for (bands, dtype)."""
    n_in = ckpt["in_channels"]
    # Bands 1..n mean "all bands of the training scenes"; an explicit pick such as [4, 3, 2]
    # says which bands to read from any scene that has them.
    all_bands = ckpt["bands"] == list(range(1, n_in + 1))
    if not bands_given and all_bands and len(info.bands) != n_in:
        raise InputError(
            f"{info.path} has {len(info.bands)} bands (without alpha) but the model was trained on"
            f" {n_in} (bands {ckpt['bands']}); pass --bands to pick {n_in} of them, or use a"
            " checkpoint trained on such scenes"
        )
    want = ckpt.get("dtype")
    if want and np.dtype(want) != np.dtype(info.dtype):
        raise InputError(
            f"{info.path} holds {info.dtype} pixels but the model was trained on {want}; convert"
            f" the scene (e.g. gdal_translate -ot {np.dtype(want).name} -scale) or retrain"
        )


def window_reader(ds: Any, info: SceneInfo) -> WindowReader:
    def read(row: int, height: int, col: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return read_strip(ds, info, row, height, col, width)

    return read


def block_cache(ds: Any, size: int) -> int:
    """GDAL block cache in bytes: two strips of input blocks plus output tile rows, not GDAL's
    default 5 % of RAM, which would let cached blocks grow with the scene's height."""
    strip = ds.count * np.dtype(ds.dtypes[0]).itemsize * max(size, 512) * ds.width
    return int(max(64 * 2**20, 2 * strip))


def parse_bands(bands: str | list[int] | None) -> list[int] | None:
    """ "4,3,2" -> [4, 3, 2]."""
    if bands is None or isinstance(bands, list):
        return bands
    try:
        return [int(b) for b in str(bands).split(",") if b.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"--bands {bands!r} is not a comma-separated list of 1-based band numbers"
        ) from exc


def shard_items(items: list[str], index: int | None, count: int | None) -> list[str]:
    if index is None and count is None:
        return items
    count, index = count or 1, index or 0
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard-index {index} must be in 0..{count - 1} (--shard-count {count})"
        )
    return items[index::count]


def predict_scenes(
    scenes: list[str],
    checkpoint: str,
    out: str,
    overlap: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    probabilities: str | None = None,
    vector: str | None = None,
    bands: str | list[int] | None = None,
    store: str | None = None,
    split: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    pixel_space: bool = False,
    overwrite: bool = False,
    shard_index: int | None = None,
    shard_count: int | None = None,
    progress: bool = True,
    network: tuple[Predictor, dict[str, Any]] | None = None,
) -> PredictSummary:
    """Predict a mask (and optional probabilities / polygons) for every scene of this shard.

    `network` replaces the checkpoint's (predictor, description) -- for benchmarks only.
    """
    started = time.perf_counter()
    if store is not None and scenes:
        raise ConfigError("give either SCENE... or --store, not both")
    if store is None and not scenes:
        raise ConfigError("no scenes given: pass SCENE... (files, folders, globs) or --store STORE")
    if store is None:  # cheap checks of inputs and outputs before loading the network
        paths = shard_items(expand_inputs(scenes), shard_index, shard_count)
        outputs = output_paths(paths, out, probabilities is not None, vector)
        check_writable(out)
    predictor, ckpt = network or load_predictor(
        checkpoint, device=device, precision=precision, tta=tta
    )
    if store is not None:
        from seg.predictions import predict_store

        return predict_store(
            store,
            out,
            predictor,
            ckpt,
            checkpoint,
            split,
            batch_size,
            overwrite,
            (shard_index, shard_count),
            progress,
        )
    size = ckpt["size"]
    overlap = size // 4 if overlap is None else overlap
    if not 0 <= overlap < size:
        raise ConfigError(f"--overlap {overlap} must be in 0..{size - 1} (window size {size})")
    check_geometry(size, size - overlap)
    bands = parse_bands(bands)
    read_bands = bands or ckpt["bands"]
    if len(read_bands) != ckpt["in_channels"]:
        raise ConfigError(
            f"--bands gives {len(read_bands)} bands; the model takes {ckpt['in_channels']}"
        )
    tags = {"SEG_CHECKPOINT": checkpoint, "SEG_WINDOW": {"size": size, "overlap": overlap}}

    summary = PredictSummary(scenes=len(paths))
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=Console(stderr=True), disable=not progress) as bar:
        t_scenes = bar.add_task("scenes", total=len(paths))
        t_windows = bar.add_task("windows", total=0)
        for path in paths:
            dst = outputs[path]
            if segfs.exists(dst.mask) and not overwrite:
                summary.skipped += 1
                bar.advance(t_scenes)
                continue
            with open_raster(path) as ds, rasterio.Env(GDAL_CACHEMAX=block_cache(ds, size)):
                info = scene_info(ds, path, read_bands, pixel_space)
                if bands is None:  # the scene's own band count, not the checkpoint's selection
                    info_all = scene_info(ds, path, None, pixel_space)
                    check_scene(info_all, ckpt, bands_given=False)
                check_scene(info, ckpt, bands_given=True)
                grid_n = len(windows(info.height, info.width, size, size - overlap))
                bar.reset(t_windows, total=grid_n, description=f"windows {stem(path)}")
                writer = SceneOutputs(
                    info, dst, ckpt["class_names"], probabilities, {**tags, "SEG_SOURCE": path}
                )
                with writer.open() as sink:
                    summary.windows += stitch_scene(
                        window_reader(ds, info),
                        info.height,
                        info.width,
                        size,
                        overlap,
                        predictor,
                        ckpt["num_classes"],
                        sink,
                        batch_size=batch_size,
                        advance=lambda n: bar.advance(t_windows, n),
                    )
            summary.predicted += 1
            summary.outputs.append(dst.mask)
            bar.advance(t_scenes)
    summary.seconds = time.perf_counter() - started
    return summary
