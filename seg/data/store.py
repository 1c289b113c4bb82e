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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr

from seg import __version__
from seg import fs as segfs
from seg.data.bandstats import BandStats
from seg.data.scene_writer import SceneWriter
from seg.data.schema import FORMAT, SceneAttrs
from seg.errors import StoreError
from seg.geo.grid import Window

__all__ = ["FORMAT", "BandStats", "Scene", "SceneAttrs", "WindowStore"]


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


def _refuse_foreign(path: str) -> None:
    """A new store goes into a missing or empty folder only: creating it (zarr mode "w") would
    delete whatever the folder holds, and seg never deletes files it did not write."""
    fs, p = segfs.filesystem(path)
    try:
        if not fs.exists(p):
            return
        if not fs.isdir(p):
            raise StoreError(f"--out {path} is a file, not a window store; choose another --out")
        held = [h for h in fs.ls(p, detail=False) if not str(h).endswith(segfs.LOCK)]
    except StoreError:
        raise
    except Exception as exc:
        raise segfs.unreachable(path, exc) from exc
    if held:
        raise StoreError(
            f"--out {path} exists and is not a seg window store (it holds {len(held)} entries,"
            " which seg will not delete); choose a new or empty folder"
        )


def _mapping(value: Any) -> dict[str, Any]:
    """A zarr attribute that holds a JSON object, as a dict ({} when absent)."""
    return dict(value) if isinstance(value, dict) else {}


@dataclass
class Scene:
    """Read access to one scene of a store. Arrays are opened lazily; nothing is loaded."""

    scene_id: str
    group: zarr.Group

    @property
    def attrs(self) -> SceneAttrs:
        return SceneAttrs.from_json(_mapping(self.group.attrs.get("scene")))

    @property
    def image(self) -> zarr.Array:
        return self._array("image")

    @property
    def mask(self) -> zarr.Array | None:
        return self.group["mask"] if "mask" in self.group else None  # type: ignore[return-value]  # noqa: SIM401

    @property
    def windows(self) -> np.ndarray:
        return np.asarray(self._array("window")[:])

    def _array(self, name: str) -> zarr.Array:
        try:
            return self.group[name]  # type: ignore[return-value]
        except KeyError as exc:  # its zarr.json is gone: a damaged store, not a bug of ours
            raise StoreError(
                f"scene {self.scene_id!r} of the store has no readable {name!r} array; the store"
                " is damaged: re-tile that scene (seg tile ... --overwrite)"
            ) from exc

    def __len__(self) -> int:
        return self.attrs.n_windows

    @property
    def band_stats(self) -> BandStats:
        return self.attrs.band_stats

    def window_transform(self, index: int) -> Any:
        """The affine transform of window `index` (rebuilt from scene transform + offsets)."""
        from affine import Affine

        win = Window(*(int(x) for x in self.windows[index]))
        return win.transform(Affine(*self.attrs.transform))


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
        if not exists:
            _refuse_foreign(path)
        if exists:
            root = _open_root(path, "r+")
            have = _mapping(root.attrs.get("seg"))
            if have.get("format") != FORMAT:  # --overwrite never wipes what seg did not write
                raise StoreError(
                    f"{path} exists and is not a seg window store; choose another --out"
                )
        if exists and not overwrite:
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
            ids = [
                s for s in ids
                if splits.get(s) == split
                or (splits.get(s) == "blocks" and self.scene(s).attrs.window_splits.get(split))
            ]  # fmt: skip
        return ids

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data a model learnt from: the format, every finished scene with
        its split and window count, and a digest of them (equal stores, equal digests)."""
        import hashlib
        import json

        splits = self.splits
        scenes = {sid: [splits.get(sid), len(self.scene(sid))] for sid in self.scene_ids()}
        text = json.dumps({"format": FORMAT, "scenes": scenes}, sort_keys=True)
        return {
            "format": FORMAT,
            "scenes": scenes,
            "windows": sum(n for _, n in scenes.values()),
            "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        }

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
        *,
        max_windows: int,
        bands: int,
        size: int,
        dtype: np.dtype[Any],
        with_mask: bool,
        windows_per_shard: int = 16,
    ) -> SceneWriter:
        return SceneWriter(
            self.root,
            scene_id,
            max_windows=max_windows,
            bands=bands,
            size=size,
            dtype=dtype,
            with_mask=with_mask,
            windows_per_shard=windows_per_shard,
        )
