"""Per-window predictions in a zarr, and `seg stitch`: those windows -> one mask per scene.

`predict_store()` runs the network over the windows of a `seg tile` store and keeps each window's
class probabilities; `stitch_predictions()` blends them with the same
`seg.inference.stitch.Stitcher` that `seg predict` uses, onto each scene's grid (crs, transform,
width, height from the store).

Layout (local or gs://)::

    preds.zarr/        attrs["seg"]: format, classes, size, stride, store, checkpoint
      <scene_id>/      attrs["scene"]: the window store's scene attrs; attrs["done"] written last
        prob   (N, K, S, S) float16   chunk = one window, sharded like the store
        valid  (N, S, S)    bool      False = no data or padding
        window (N, 4)       int32     row_off, col_off, height, width (as in the store)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import zarr

from seg import fs as segfs
from seg.data.scene_metadata import SceneFacts
from seg.data.store import Scene, SceneAttrs, WindowStore
from seg.data.window_prep import Normalisation, prepare_window, store_valid
from seg.errors import ConfigError, InputError, StoreError
from seg.geo.grid import Window
from seg.inference.loading import WindowModel, load_for
from seg.inference.metadata import conditioned
from seg.inference.options import PredictOptions, PredictSummary
from seg.inference.outputs import MASK_SUFFIX, VECTOR_FORMATS, OutputPaths, SceneOutputs
from seg.inference.priors import Batch, scene_shift
from seg.inference.stitch import Stitcher
from seg.report import SILENT, Reporter

FORMAT = "seg-predictions/1"
PER_SHARD = 16


def _open(path: str, mode: str) -> zarr.Group:
    try:
        return zarr.open_group(path, mode=mode, storage_options=segfs.storage_options(path) or None)  # type: ignore[arg-type]
    except Exception as exc:
        if segfs.is_remote(path):
            raise segfs.unreachable(path, exc) from exc
        raise StoreError(f"cannot open predictions {path}: {exc}") from exc


def _check_out(out: str, store_path: str) -> None:
    """--out is a new or empty folder, or an earlier predictions zarr: never the window store or
    another zarr (writing our attributes into it would make it unusable)."""
    same = (
        os.path.realpath(out) == os.path.realpath(store_path)
        if not segfs.is_remote(out)
        else (out.rstrip("/") == store_path.rstrip("/"))
    )
    if same:
        raise ConfigError(
            f"--out {out} is the window store itself; give a new folder for predictions"
        )
    if segfs.exists(segfs.join(out, "zarr.json")):
        meta = dict(_open(out, "r").attrs.get("seg") or {})  # type: ignore[arg-type]
        if meta.get("format") != FORMAT:
            raise StoreError(
                f"--out {out} is a zarr but not seg predictions (from `seg predict --store`);"
                " choose another --out"
            )
    elif segfs.exists(out):
        fs, p = segfs.filesystem(out)
        if not fs.isdir(p) or fs.ls(p, detail=False):
            raise StoreError(f"--out {out} exists and is not a predictions zarr; choose another")


def predict_store(
    store_path: str,
    *,
    checkpoint: str,
    out: str,
    split: str | None = None,
    options: PredictOptions | None = None,
    reporter: Reporter = SILENT,
) -> PredictSummary:
    """Class probabilities for every window of the store's (split's) scenes, into `out`."""
    opts = options or PredictOptions()
    if opts.window is not None:
        raise ConfigError("--window-size applies to scenes, not to a store's windows: drop it")
    if opts.coarse_pass == "on":
        raise ConfigError("--coarse-pass applies to scenes, not to a store's windows: drop it")
    started = time.perf_counter()
    store = WindowStore.open(store_path)
    _check_out(out, store_path)
    predictor, info = load_for(checkpoint, opts)
    settings = store.settings
    n_bands = settings.get("n_bands", len(settings.get("bands") or []))
    if n_bands and n_bands != info.in_channels:
        raise InputError(
            f"{store_path} holds {n_bands}-band windows; the model takes {info.in_channels}"
        )
    ids = opts.shard.pick(store.scene_ids(split))
    root = _open(out, "a")
    root.attrs["seg"] = {
        "format": FORMAT,
        "classes": list(info.class_names),
        "size": int(settings["size"]),
        "stride": int(settings["stride"]),
        "store": store_path,
        "checkpoint": checkpoint,
        # seg stitch adapts to each scene's class shares, as seg predict does on scenes.
        "class_prior": list(info.class_prior or []) if opts.adapt_priors else None,
        "calibration": info.calibration if opts.adapt_priors else None,
    }
    norm = Normalisation.of(info)
    summary = PredictSummary(scenes=len(ids))
    with reporter.bar("scenes", len(ids)) as scenes_bar, reporter.bar("windows", 0) as bar:
        for sid in ids:
            if sid in root and root[sid].attrs.get("done") and not opts.overwrite:
                summary.skipped += 1
                scenes_bar.advance()
                continue
            scene = store.scene(sid)
            if info.dtype and np.dtype(info.dtype) != np.dtype(scene.image.dtype):
                raise InputError(
                    f"scene {sid} holds {scene.image.dtype}; the model was trained on {info.dtype}"
                )
            bar.reset(len(scene), f"windows {sid}")
            facts = SceneFacts.of_attrs(sid, scene.attrs)  # the metadata `seg tile` kept
            _predict_scene(
                root,
                sid,
                scene,
                predictor=conditioned(predictor, info, facts, reporter),
                norm=Normalisation.for_scene(info.normalise, scene.band_stats, norm),
                k=info.num_classes,
                batch_size=opts.batch_size,
                advance=bar.advance,
            )
            summary.windows += len(scene)
            summary.predicted += 1
            summary.outputs.append(segfs.join(out, sid))
            scenes_bar.advance()
    summary.seconds = time.perf_counter() - started
    return summary


def _predict_scene(
    root: zarr.Group,
    sid: str,
    scene: Scene,
    *,
    predictor: WindowModel,
    norm: Normalisation,
    k: int,
    batch_size: int,
    advance: Callable[[int], None],
) -> None:
    if sid in root:
        del root[sid]  # unfinished or to be redone
    group = root.create_group(sid)
    n, size = len(scene), int(scene.image.shape[-1])
    nn = max(n, 1)
    prob = group.create_array(
        "prob",
        shape=(nn, k, size, size),
        chunks=(1, k, size, size),
        shards=(PER_SHARD, k, size, size),
        dtype="float16",
        fill_value=0,
    )
    valid_arr = group.create_array(
        "valid",
        shape=(nn, size, size),
        chunks=(1, size, size),
        shards=(PER_SHARD, size, size),
        dtype="bool",
        fill_value=False,
    )
    windows = scene.windows.reshape(-1, 4)
    # Whole shards at a time: writing a sharded array window by window is 6-9x slower.
    for start in range(0, n, PER_SHARD):
        stop = min(start + PER_SHARD, n)
        images = np.asarray(scene.image[start:stop])  # (b, C, S, S)
        masks = np.asarray(scene.mask[start:stop]) if scene.mask is not None else None
        valid = np.stack(
            [
                store_valid(images[i], masks[i] if masks is not None else None, h, w)
                for i, (_, _, h, w) in enumerate(windows[start:stop])
            ]
        )  # (b, S, S)
        out = np.empty((stop - start, k, size, size), np.float16)
        for b in range(0, stop - start, batch_size):
            x = np.stack(
                [
                    prepare_window(im, v, norm, size)
                    for im, v in zip(
                        images[b : b + batch_size], valid[b : b + batch_size], strict=True
                    )
                ]
            )
            out[b : b + batch_size] = predictor(x)
            advance(len(x))
        prob[start:stop] = out
        valid_arr[start:stop] = valid
    if n == 0:
        prob.resize((0, k, size, size))
        valid_arr.resize((0, size, size))
    group.create_array("window", shape=(n, 4), dtype="int32", fill_value=0)[:] = windows
    group.attrs["scene"] = scene.group.attrs["scene"]  # the store's SceneAttrs, as stored
    group.attrs["done"] = True  # last: a scene without it is redone


def stitch_predictions(
    predictions: str,
    out: str,
    *,
    probabilities: str | None = None,
    vector: str | None = None,
    overwrite: bool = False,
    reporter: Reporter = SILENT,
) -> PredictSummary:
    """One mask GeoTIFF (COG) per scene of a predictions zarr, blended like `seg predict`."""
    started = time.perf_counter()
    if not segfs.exists(segfs.join(predictions, "zarr.json")):
        raise StoreError(
            f"no predictions at {predictions} (run `seg predict --store STORE --out {predictions}`)"
        )
    root = _open(predictions, "r")
    meta: dict[str, Any] = dict(root.attrs.get("seg") or {})  # type: ignore[arg-type]
    if meta.get("format") != FORMAT:
        raise StoreError(
            f"{predictions} is not a seg predictions zarr (from `seg predict --store`)"
        )
    if vector and vector.lower() not in VECTOR_FORMATS:
        raise InputError(f"--vector for `seg stitch` is a format: {' or '.join(VECTOR_FORMATS)}")
    classes = list(meta["classes"])
    size, overlap = int(meta["size"]), int(meta["size"]) - int(meta["stride"])
    ids = sorted(k for k, g in root.groups() if g.attrs.get("done"))
    summary = PredictSummary(scenes=len(ids))
    with reporter.bar("scenes", len(ids)) as scenes_bar:
        for sid in ids:
            mask = segfs.join(out, sid + MASK_SUFFIX)
            if segfs.exists(mask) and not overwrite:
                summary.skipped += 1
                scenes_bar.advance()
                continue
            group: Any = root[sid]
            info = SceneAttrs.from_json(dict(group.attrs["scene"])).scene_info(sid)
            base = mask.rsplit(".", 1)[0]
            paths = OutputPaths(
                mask,
                base + "_probs.tif" if probabilities else None,
                f"{base}.{vector.lower()}" if vector else None,
            )
            tags: dict[str, Any] = {
                "SEG_SOURCE": info.path,
                "SEG_WINDOW": {"size": size, "overlap": overlap},
            }
            wins = np.asarray(group["window"][:]).reshape(-1, 4)
            order = np.lexsort((wins[:, 1], wins[:, 0]))  # row-major, as the stitcher needs
            shift = None
            if meta.get("class_prior"):
                prior, cal = tuple(meta["class_prior"]), meta.get("calibration")
                shift = scene_shift(_stored(group, wins), prior, calibration=cal)
                tags["SEG_PRIORS"] = shift.tag()
            outputs = SceneOutputs(info, paths, classes, probabilities=probabilities, tags=tags)
            with outputs.open() as sink:
                stitcher = Stitcher(
                    info.height, info.width, len(classes), size=size, overlap=overlap, sink=sink
                )
                for start in range(0, len(order), PER_SHARD):
                    idx = np.sort(order[start : start + PER_SHARD])
                    probs = np.asarray(group["prob"].get_orthogonal_selection((idx,)))
                    if shift is not None:
                        probs = shift.apply(probs.astype(np.float32))
                    valid = np.asarray(group["valid"].get_orthogonal_selection((idx,)))
                    by_pos = {int(j): i for i, j in enumerate(idx)}
                    for j in order[start : start + PER_SHARD]:
                        r, c, h, w = (int(v) for v in wins[j])
                        i = by_pos[int(j)]
                        stitcher.add(Window(r, c, h, w), probs[i].astype(np.float32), valid[i])
                stitcher.finish()
            summary.predicted += 1
            summary.windows += len(wins)
            summary.outputs.append(mask)
            scenes_bar.advance()
    summary.seconds = time.perf_counter() - started
    return summary


def _stored(group: Any, wins: np.ndarray) -> Iterator[Batch]:
    """A scene's stored windows, a shard at a time, as a first pass for `scene_shift`."""
    for start in range(0, len(wins), PER_SHARD):
        idx = np.arange(start, min(start + PER_SHARD, len(wins)))
        probs = np.asarray(group["prob"].get_orthogonal_selection((idx,))).astype(np.float32)
        valid = np.asarray(group["valid"].get_orthogonal_selection((idx,)))
        yield [Window(*(int(v) for v in wins[j])) for j in idx], probs, list(valid)
