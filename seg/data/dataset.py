"""Torch datasets streaming windows from a seg window store (local or gs://).

Nothing is loaded up front: the index is (scene, window) pairs, and each worker process opens
its own store handle on first use (a handle opened in the parent is never shared across a fork).
Images are normalised with the train split's band statistics to float32, then augmented with the
mask (seg.data.augment); 255 stays "ignore". For a network conditioned on scene metadata, each
item also carries its scene's encoded vector (seg.data.scene_metadata).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seg.config import AugmentSection, DataSection, TrainConfig
from seg.data.augment import apply_augment, build_augment
from seg.data.samplers import EpochSampler
from seg.data.scene_metadata import MetadataCodec, SceneFacts
from seg.data.store import WindowStore
from seg.data.window_prep import Normalisation, prepare_window, store_valid
from seg.data.window_reader import WindowReader
from seg.errors import ConfigError, StoreError


class WindowDataset(Dataset[tuple[torch.Tensor, ...]]):
    """Windows of `scene_ids`: item -> (image (C, S, S) float32, mask (S, S) int64), plus the
    scene's metadata vector (M,) float32 when `codec` is given.

    Items are an index or `(index, seed)`; with a seed (from `EpochSampler`) the augmentation is
    a function of the seed only, which makes resumed runs repeat the straight run exactly.
    """

    def __init__(
        self,
        store_path: str,
        scene_ids: list[str],
        norm: Normalisation,
        *,
        augment: AugmentSection | None = None,
        max_windows: int | None = None,
        subsample_seed: int = 0,
        store: WindowStore | None = None,
        normalise: str = "global",
        split: str | None = None,
        codec: MetadataCodec | None = None,
    ) -> None:
        self.store_path, self.split = store_path, split
        self.scene_ids = list(scene_ids)
        self.norm = norm
        store = store or WindowStore.open(store_path)
        self.size = int(store.settings["size"])
        pairs: list[tuple[int, int]] = []
        # One normalisation per scene: `norm` for all ("global"), or from the scene's own
        # statistics ("scene", "percentile": Normalisation.for_scene).
        self.norms: list[Normalisation] = []
        vectors: list[np.ndarray] = []  # one metadata vector per scene
        for k, sid in enumerate(self.scene_ids):
            scene = store.scene(sid)
            attrs = scene.attrs  # parsed once: band statistics and the scene's own splits
            stats = attrs.band_stats
            self.norms.append(Normalisation.for_scene(normalise, stats, norm))
            if codec is not None:
                vectors.append(codec.encode(SceneFacts.of_attrs(sid, attrs))[0])
            if scene.mask is None:
                raise StoreError(
                    f"scene {sid!r} in {store_path} has no labels;"
                    " re-tile it with --labels to train on it"
                )
            # A scene split inside itself (splits.blocks) gives only this split's windows.
            inside = attrs.window_splits if split is not None else {}
            numbers = inside.get(split or "", []) if inside else range(len(scene))
            pairs.extend((k, i) for i in numbers)
        index = np.asarray(pairs, np.int64).reshape(-1, 2)
        if max_windows is not None and len(index) > max_windows:
            pick = np.random.default_rng(subsample_seed).choice(len(index), max_windows, False)
            index = index[np.sort(pick)]
        self.index = index  # (N, 2): scene number, window number
        self.meta = np.stack(vectors) if codec is not None else None  # (scenes, M)
        self.pipeline = build_augment(augment, self.size) if augment is not None else None
        self._pid = -1
        # Per process: (image, mask) readers of each scene, opened once (metadata read once).
        self._arrays: list[tuple[WindowReader, WindowReader]] = []

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"], state["_pid"] = [], -1  # workers open their own handles
        return state

    def _scene_arrays(self, k: int) -> tuple[WindowReader, WindowReader]:
        if self._pid != os.getpid():
            store = WindowStore.open(self.store_path)
            scenes = [store.scene(s) for s in self.scene_ids]
            # Masks exist: checked in __init__. The readers bypass zarr for local stores.
            self._arrays = [
                (WindowReader(scene.image), WindowReader(scene.mask))  # type: ignore[arg-type]
                for scene in scenes
            ]
            self._pid = os.getpid()
        return self._arrays[k]

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw window i: image (C, S, S) store dtype, mask (S, S) uint8."""
        k, w = (int(x) for x in self.index[i])
        image, mask = self._scene_arrays(k)
        try:
            return image.read(w), mask.read(w)
        except Exception as exc:  # damaged shard bytes (blosc), a bad shard index (checksum) ...
            raise self._damaged(k, w, exc) from exc

    def read_mask(self, i: int) -> np.ndarray:
        """Window i's mask (S, S) uint8 alone (class counts need no imagery decoded)."""
        k, w = (int(x) for x in self.index[i])
        try:
            return self._scene_arrays(k)[1].read(w)
        except Exception as exc:
            raise self._damaged(k, w, exc) from exc

    def _damaged(self, k: int, w: int, exc: Exception) -> StoreError:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return StoreError(
            f"window {w} of scene {self.scene_ids[k]!r} in {self.store_path} cannot be read"
            f" ({type(exc).__name__}: {reason}); the store is damaged: re-tile that scene"
            " (seg tile ... --overwrite)"
        )

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        raw, mask = self.read(int(i))
        k = int(self.index[int(i), 0])
        norm = self.norms[k]
        # (C, S, S) float32: the same preparation `seg predict` applies (seg.data.window_prep).
        image = prepare_window(raw, store_valid(raw, mask, self.size, self.size), norm, self.size)
        if self.pipeline is not None:
            image, mask = apply_augment(self.pipeline, image, mask, seed if seed is not None else i)
        out = torch.from_numpy(image), torch.from_numpy(mask.astype(np.int64))
        return out if self.meta is None else (*out, torch.from_numpy(self.meta[k]))


@dataclass
class TrainData:
    """What a training run learns from the store before it starts."""

    path: str
    store: WindowStore
    train_ids: list[str]
    val_ids: list[str]
    classes: list[str]
    bands: int  # channels per window
    band_ids: list[int]  # the scene bands (1-based) the windows hold: what predict must read
    size: int
    dtype: str  # the scenes' pixel type: predict refuses scenes of another type
    val_from_train: bool = False  # no scene in the val split: validating on training windows


def open_data(data: str, cfg: DataSection) -> TrainData:
    """The store and its train and val scene ids (by the store's scene splits); clear
    errors for a wrong store, classes that disagree, an empty split, or odd window sizes."""
    store = WindowStore.open(data)
    if cfg.classes is not None and cfg.classes != store.classes:
        raise ConfigError(
            f"data.classes {cfg.classes} disagree with the store's classes {store.classes};"
            " fix the config or re-tile with the intended classes"
        )
    if not store.classes:
        raise StoreError(f"{data} has no class names; tile it with labels to train on it")
    train_ids, val_ids = store.scene_ids(cfg.train_split), store.scene_ids(cfg.val_split)
    if not train_ids:
        raise StoreError(
            f"split {cfg.train_split!r} of {data} has no finished scenes (splits: {store.splits});"
            " tile scenes into it or choose the split with data.train_split"
        )
    # One scene (or all in train) is enough to start: validate on (a subsample of) the training
    # windows then, and say so; the figures are optimistic, the run is still usable.
    val_from_train = not val_ids
    val_ids = val_ids or train_ids
    first = store.scene(train_ids[0]).image
    bands, size = int(first.shape[1]), int(store.settings["size"])
    if size % 32:
        raise StoreError(
            f"{data} has {size} px windows; UNet needs a multiple of 32 (re-tile with --size)"
        )
    listed = store.settings.get("bands")
    band_ids = listed if isinstance(listed, list) else list(range(1, bands + 1))
    return TrainData(
        data,
        store,
        train_ids,
        val_ids,
        store.classes,
        bands,
        band_ids,
        size,
        str(first.dtype),
        val_from_train,
    )


def scene_facts(info: TrainData, scene_ids: list[str]) -> list[SceneFacts]:
    """What each scene of the store says about itself (for fitting a metadata codec)."""
    return [SceneFacts.of_attrs(sid, info.store.scene(sid).attrs) for sid in scene_ids]


def build_datasets(
    info: TrainData,
    norm: Normalisation,
    cfg: TrainConfig,
    default_val_windows: int | None = None,
    *,
    codec: MetadataCodec | None = None,
) -> tuple[WindowDataset, WindowDataset]:
    """Train (augmented, optionally a seeded subset) and val (evenly spaced subset) datasets."""
    d = cfg.data
    data, store = info.path, info.store
    seed = cfg.train.seed
    train = WindowDataset(
        data,
        info.train_ids,
        norm,
        augment=cfg.augment,
        max_windows=d.max_train_windows,
        subsample_seed=seed,
        store=store,
        normalise=d.normalise,
        split=d.train_split,
        codec=codec,
    )
    val_split = d.train_split if info.val_from_train else d.val_split
    val = WindowDataset(
        data, info.val_ids, norm, store=store, normalise=d.normalise, split=val_split, codec=codec
    )
    cap = d.max_val_windows or default_val_windows
    if cap and len(val) > cap:
        keep = np.linspace(0, len(val) - 1, cap).round().astype(np.int64)
        val.index = val.index[keep]
    return train, val


def train_loader(
    dataset: WindowDataset,
    cfg: TrainConfig,
    *,
    epoch: int,
    batches: int,
    start_batch: int,
    rank: int,
    world: int,
    pin_memory: bool,
    weights: np.ndarray | None = None,
) -> DataLoader[Any]:
    """The DataLoader of one epoch (for one DDP rank), starting at batch `start_batch`; windows
    drawn with probabilities `weights` when given (seg.data.sampling)."""
    d, seed = cfg.data, cfg.train.seed
    sampler = EpochSampler(
        len(dataset),
        d.batch_size,
        batches,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world=world,
        start_batch=start_batch,
        weights=weights,
    )
    return DataLoader(
        dataset,
        batch_size=d.batch_size,
        sampler=sampler,
        num_workers=d.workers(),
        pin_memory=pin_memory,
        drop_last=True,
        # Own generator: creating an iterator must not draw from the global torch RNG.
        generator=torch.Generator().manual_seed(seed),
    )
