"""`seg info PATH`: what a window store, a checkpoint, a mask or a raster is, as plain data.

Classes, bands, window size, statistics, splits and provenance: what a user needs to know
before feeding one to the next command. Nothing is loaded beyond metadata (a checkpoint is read
with `weights_only=True`; its weights are only counted).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from seg import fs as segfs
from seg.checkpoint import read_checkpoint
from seg.data.store import WindowStore
from seg.errors import CheckpointError, InputError, StoreError
from seg.geo.raster import RASTER_SUFFIXES, open_raster
from seg.inference.export import META, info_from_json, read_safetensors


def describe(path: str) -> dict[str, Any]:
    """{"kind": "window store" | "checkpoint" | "mask" | "raster", ...} for the file at `path`."""
    if not segfs.exists(path):
        raise InputError(f"{path} does not exist")
    if segfs.is_dir(path):
        try:
            return _store(WindowStore.open(path))
        except StoreError as exc:
            raise InputError(f"{path} is a folder but not a seg window store ({exc})") from exc
    name = str(path).lower()
    if name.endswith((".onnx", ".safetensors")):
        return _export(path)
    if not name.endswith(RASTER_SUFFIXES):
        try:
            return _checkpoint(path)
        except CheckpointError:
            pass  # perhaps a raster with another extension
    try:
        return _raster(path)
    except InputError as exc:
        raise InputError(
            f"{path} is not a window store, a seg checkpoint or a raster ({exc})"
        ) from exc


def _store(store: WindowStore) -> dict[str, Any]:
    settings = store.settings
    made = store.fingerprint()  # every scene's split and window count, read once
    ids = list(made["scenes"])
    per_split: dict[str, dict[str, int]] = {}
    for split, n in made["scenes"].values():
        row = per_split.setdefault(split or "?", {"scenes": 0, "windows": 0})
        row["scenes"] += 1
        row["windows"] += n
    train = store.scene_ids("train") or ids
    stats = None
    if train:
        merged = store.band_stats(train)
        stats = {
            "mean": [round(float(x), 3) for x in merged.mean],
            "std": [round(float(x), 3) for x in merged.std],
        }
    return {
        "kind": "window store",
        "path": store.path,
        "format": settings.get("format"),
        "classes": store.classes,
        "bands": settings.get("bands"),
        "window": {"size": settings.get("size"), "stride": settings.get("stride")},
        "scenes": len(ids),
        "windows": made["windows"],
        "splits": dict(sorted(per_split.items())),
        "band_stats (train)": stats,
        "fingerprint": made["digest"],
    }


def _checkpoint(path: str) -> dict[str, Any]:
    info, state = read_checkpoint(path)
    weights = state.get("state_dict", {})
    params = sum(int(v.numel()) for v in weights.values() if hasattr(v, "numel"))
    return {
        "kind": "checkpoint",
        "path": path,
        "model": {k: v for k, v in info.model.items()},
        "parameters": params,
        "classes": list(info.class_names),
        "bands": list(info.bands),
        "window size": info.size,
        "pixel type": info.dtype,
        "normalise": info.normalise,
        "band_stats": {"mean": list(info.mean), "std": list(info.std)},
        "metadata": info.metadata or "none (not conditioned)",
        "trained": {k: state[k] for k in ("epoch", "step") if k in state} or "weights only",
        "provenance": info.provenance or "not recorded (an older checkpoint)",
    }


def _export(path: str) -> dict[str, Any]:
    """An inference-only export (`seg export`): its description, read from its metadata."""
    if path.lower().endswith(".safetensors"):
        info, state = read_safetensors(path)
        params = sum(int(v.numel()) for v in state["state_dict"].values())
        fmt = "safetensors"
    else:
        import onnx

        model = onnx.load_from_string(segfs.read_bytes(path))
        meta = {p.key: p.value for p in model.metadata_props}
        if META not in meta:
            raise InputError(f"{path} is an ONNX model but not a seg export")
        info = info_from_json(meta[META], path)
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        fmt = "onnx"
    return {
        "kind": f"export ({fmt})",
        "path": path,
        "model": dict(info.model),
        "parameters": params,
        "classes": list(info.class_names),
        "bands": list(info.bands),
        "window size": info.size,
        "normalise": info.normalise,
        "metadata": info.metadata or "none (not conditioned)",
        "provenance": info.provenance or "not recorded",
    }


def _raster(path: str) -> dict[str, Any]:
    with open_raster(path) as ds:
        tags = ds.tags()
        out: dict[str, Any] = {
            "kind": "mask" if "SEG_CLASSES" in tags else "raster",
            "path": path,
            "size": [ds.width, ds.height],
            "bands": ds.count,
            "pixel type": ds.dtypes[0],
            "crs": ds.crs.to_string() if ds.crs else None,
            "pixel size": [abs(ds.transform.a), abs(ds.transform.e)],
            "nodata": ds.nodata,
        }
    for key, value in sorted(tags.items()):
        if key.startswith("SEG_"):
            try:
                out[key.removeprefix("SEG_").lower()] = json.loads(value)
            except ValueError:
                out[key.removeprefix("SEG_").lower()] = value
    return out
