"""`predict_scenes()`: GeoTIFF scenes -> class masks on exactly each scene's grid.

Per scene: overlapping windows from `seg.geo.grid.windows` (the last row/column shifted in),
prepared exactly as the training data is (`seg.data.window_prep`), batched through the network,
blended by `seg.inference.stitch.Stitcher`, written strip by strip by `outputs.SceneOutputs`.
Memory depends on the scene width and the window size, never on the height.
"""

from __future__ import annotations

import errno
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import rasterio

from seg import fs as segfs
from seg.checkpoint import CheckpointInfo
from seg.data.pixel_size import scene_gsd
from seg.data.scene_metadata import SceneFacts
from seg.data.window_prep import Normalisation, scene_stats
from seg.errors import ConfigError, InputError
from seg.geo.grid import Window, check_geometry, window_count
from seg.geo.labels import stem
from seg.geo.raster import READ_ERRORS, SceneInfo, damaged, expand_inputs, open_raster, scene_info
from seg.inference import coarse_pass
from seg.inference.batches import WindowReader, batches, predicted, window_reader
from seg.inference.loading import WindowModel, load_for
from seg.inference.metadata import conditioned
from seg.inference.onnx_predictor import OnnxPredictor
from seg.inference.options import PredictOptions, PredictSummary, predict_window, scene_window
from seg.inference.outputs import (
    OutputPaths,
    SceneOutputs,
    check_existing,
    finished,
    mask_provenance,
    output_paths,
)
from seg.inference.pipeline import Behind, prefetch, return_freed_memory
from seg.inference.priors import PriorShift, scene_shift
from seg.inference.stitch import Sink, Stitcher
from seg.locks import FileLock
from seg.report import SILENT, Bar, Reporter


def stitch_scene(
    read: WindowReader,
    height: int,
    width: int,
    *,
    size: int,
    overlap: int,
    predictor: WindowModel,
    norm: Normalisation,
    num_classes: int,
    sink: Sink,
    batch_size: int = 4,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Predict every window of a `height` x `width` scene and hand stitched rows to `sink`."""
    stride = size - overlap
    stitcher = Stitcher(height, width, num_classes, size=size, overlap=overlap, sink=sink)

    def blend(wins: list[Window], probs: np.ndarray, valids: list[np.ndarray]) -> None:
        top = stitcher.top
        for win, p, v in zip(wins, probs, valids, strict=True):
            stitcher.add(win, p, v)
        if stitcher.top != top:  # a row of windows is done: its buffers are free
            return_freed_memory()

    # Reading runs one batch ahead and blending + writing one behind the network
    # (seg.inference.pipeline).
    behind = Behind()
    n = 0
    try:
        grid = batches(
            read, height, width, size=size, stride=stride, norm=norm, batch_size=batch_size
        )
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


def check_scene(info: SceneInfo, ckpt: CheckpointInfo, bands_given: bool) -> None:
    """Refuse a scene the checkpoint was not trained for (bands, dtype)."""
    n_in = ckpt.in_channels
    # Bands 1..n mean "all bands of the training scenes"; an explicit pick such as [4, 3, 2]
    # says which bands to read from any scene that has them.
    all_bands = ckpt.bands == tuple(range(1, n_in + 1))
    if not bands_given and all_bands and len(info.bands) != n_in:
        raise InputError(
            f"{info.path} has {len(info.bands)} bands (without alpha) but the model was trained on"
            f" {n_in} (bands {list(ckpt.bands)}); pass --bands to pick {n_in} of them, or use a"
            " checkpoint trained on such scenes"
        )
    want = ckpt.dtype
    if want and np.dtype(want) != np.dtype(info.dtype):
        raise InputError(
            f"{info.path} holds {info.dtype} pixels but the model was trained on {want}; convert"
            f" the scene (e.g. gdal_translate -ot {np.dtype(want).name} -scale) or retrain"
        )


def block_cache(ds: Any, size: int) -> int:
    """GDAL block cache in bytes: two strips of input blocks plus output tile rows, not GDAL's
    default 5 % of RAM, which would let cached blocks grow with the scene's height."""
    strip = ds.count * np.dtype(ds.dtypes[0]).itemsize * max(size, 512) * ds.width
    return int(max(64 * 2**20, 2 * strip))


def predict_scenes(
    scenes: list[str],
    *,
    checkpoint: str,
    out: str,
    options: PredictOptions | None = None,
    reporter: Reporter = SILENT,
) -> PredictSummary:
    """Predict a mask (and optional probabilities / polygons) for every scene of this shard."""
    opts = options or PredictOptions()
    if not scenes:
        raise ConfigError("no scenes given: pass SCENE... (files, folders, globs) or --store STORE")
    # Cheap checks of inputs and outputs before loading the network.
    paths = opts.shard.pick(expand_inputs(scenes))
    output_paths(paths, out, opts.probabilities is not None, opts.vector)
    segfs.check_writable(out)
    predictor, info = load_for(checkpoint, opts)
    return predict_with(
        predictor, info, paths, out=out, source=checkpoint, options=opts, reporter=reporter
    )


def predict_with(
    predictor: WindowModel,
    info: CheckpointInfo,
    paths: list[str],
    *,
    out: str,
    source: str,
    options: PredictOptions,
    reporter: Reporter = SILENT,
) -> PredictSummary:
    """Predict `paths` with a network already loaded (`source` names it in the masks' tags)."""
    started = time.perf_counter()
    opts = options
    if fixed := isinstance(predictor, OnnxPredictor):  # its training window only: no half size
        opts = replace(opts, coarse_pass=coarse_pass.for_fixed_input(opts.coarse_pass))
    size = predict_window(info, opts.window, fixed=fixed)
    overlap = size // 4 if opts.overlap is None else opts.overlap
    if not 0 <= overlap < size:
        raise ConfigError(f"--overlap {overlap} must be in 0..{size - 1} (window size {size})")
    check_geometry(size, size - overlap)
    read_bands = list(opts.bands or info.bands)
    if len(read_bands) != info.in_channels:
        raise ConfigError(
            f"--bands gives {len(read_bands)} bands; the model takes {info.in_channels}"
        )
    outputs = output_paths(paths, out, opts.probabilities is not None, opts.vector)
    check_existing(outputs)
    tags = {
        "SEG_CHECKPOINT": source,
        "SEG_WINDOW": {"size": size, "overlap": overlap},
        "SEG_PROVENANCE": mask_provenance(info),
    }
    norm = Normalisation.of(info)
    summary = PredictSummary(scenes=len(paths))
    with reporter.bar("scenes", len(paths)) as scenes_bar, reporter.bar("windows", 0) as bar:
        for path in paths:
            dst = outputs[path]
            # One writer per mask: a second `seg predict` into the same file is refused, and
            # whoever holds the lock may clear what a killed writer left beside it.
            with FileLock(dst.mask, "seg predict"):
                for target in (dst.mask, dst.probabilities):
                    if target:
                        segfs.remove_leftovers_of(target)
                if segfs.exists(dst.mask) and not opts.overwrite:
                    finished(dst.mask, path, source)  # refused when another run's
                    summary.skipped += 1
                    scenes_bar.advance()
                    continue
                try:  # a damaged file whose header reads fine fails here, in one line
                    summary.windows += _predict_scene(
                        path, dst, predictor, info, opts=opts, tags={**tags, "SEG_SOURCE": path},
                        norm=norm, size=size, overlap=overlap, read_bands=read_bands, bar=bar,
                        reporter=reporter,
                    )  # fmt: skip
                except READ_ERRORS as exc:
                    # A write into a full temp folder fails inside the same block as the reads.
                    if segfs.low_on_space(tempfile.gettempdir()):
                        raise OSError(errno.ENOSPC, "No space left", tempfile.gettempdir()) from exc
                    raise damaged(path, exc) from exc
            summary.predicted += 1
            summary.outputs.append(dst.mask)
            scenes_bar.advance()
    summary.seconds = time.perf_counter() - started
    return summary


def _predict_scene(
    path: str,
    dst: OutputPaths,
    predictor: WindowModel,
    info: CheckpointInfo,
    *,
    opts: PredictOptions,
    tags: dict[str, Any],
    norm: Normalisation,
    size: int,
    overlap: int,
    read_bands: list[int],
    bar: Bar,
    reporter: Reporter,
) -> int:
    """Predict one scene into `dst` with `size` px windows; the number of windows."""
    with open_raster(path) as ds, rasterio.Env(GDAL_CACHEMAX=block_cache(ds, size)):
        if opts.bands is None:  # the scene's own band count, not the checkpoint's pick
            check_scene(scene_info(ds, path, None, opts.pixel_space), info, False)
        scene = scene_info(ds, path, read_bands, opts.pixel_space)
        check_scene(scene, info, bands_given=True)
        if info.normalise != "global":  # the scene's own statistics, as in training
            norm = Normalisation.for_scene(info.normalise, scene_stats(ds, scene), norm)
        facts = SceneFacts.of_info(scene)
        model = conditioned(predictor, info, facts, reporter)
        read = window_reader(ds, scene)
        if (fit := scene_window(size, info.size, scene.height, scene.width)) < size:
            size, overlap = fit, min(overlap, fit // 4)  # one window: the overlap is unused
            tags = {**tags, "SEG_WINDOW": {"size": size, "overlap": overlap}}
        # How many windows (for the bar only: batches() builds the grid, once).
        stride = size - overlap
        n = window_count(scene.height, scene.width, size, stride)
        prior = info.class_prior if opts.adapt_priors else None
        first = 0 if prior is None else window_count(scene.height, scene.width, size, size)
        bar.reset(n + first, f"windows {stem(path)}")
        coarse = coarse_pass.wanted(opts.coarse_pass, info, scene_gsd(facts))
        scale = coarse_pass.network_scale(info)
        tags = {**tags, "SEG_COARSE_PASS": coarse}
        shift: PriorShift | None = None
        if prior is not None:
            # A first pass over non-overlapping windows estimates this scene's class shares.
            grid = batches(
                read, scene.height, scene.width, size=size, stride=size, norm=norm,
                batch_size=opts.batch_size,
            )  # fmt: skip
            first_model = coarse_pass.stacked(model, scale) if coarse else model
            sampled = predicted(prefetch(grid), first_model, bar.advance)
            weight = coarse_pass.WEIGHT if coarse else 0.0
            shift = scene_shift(sampled, prior, weight, info.calibration)
            tags = {**tags, "SEG_PRIORS": shift.tag()}
        if coarse:
            # Each pass reweighted, then blended (seg.inference.coarse_pass says why).
            model = coarse_pass.with_coarse_pass(model, scale, shift.apply if shift else None)
        elif shift is not None:
            model = adapted(model, shift)
        writer = SceneOutputs(
            scene, dst, list(info.class_names), probabilities=opts.probabilities, tags=tags
        )
        with writer.open() as sink:
            return first + stitch_scene(
                read,
                scene.height,
                scene.width,
                size=size,
                overlap=overlap,
                predictor=model,
                norm=norm,
                num_classes=info.num_classes,
                sink=sink,
                batch_size=opts.batch_size,
                advance=bar.advance,
            )


def adapted(model: WindowModel, shift: PriorShift) -> WindowModel:
    """`model` with its probabilities reweighted to the scene's class priors."""

    def run(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        return shift.apply(model(batch) if meta is None else model(batch, meta))

    return run
