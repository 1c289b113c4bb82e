"""Self-describing checkpoints: one file holds what `predict` needs and what `train` resumes.

A checkpoint is a plain dict saved with `torch.save` and loaded with `weights_only=True`, so
loading never runs code from the file. What crosses to prediction is a `CheckpointInfo`, read
and written here only; the rest is the training run's own state:

    format        "seg-checkpoint/1"
    model         {"name": ..., "in_channels": C, "num_classes": K, ...}  (CheckpointInfo)
    class_names   list[str]                                               (CheckpointInfo)
    bands         list[int]  1-based scene bands the network reads        (CheckpointInfo)
    band_stats    {"mean": [C floats], "std": [C floats]}                 (CheckpointInfo)
    normalise     "global" (band_stats for every scene) or "scene"        (CheckpointInfo)
    provenance    seg/torch/smp versions, git commit, --data, store print (CheckpointInfo)
    size          training window size                                    (CheckpointInfo)
    dtype         the training scenes' pixel type                         (CheckpointInfo)
    state_dict    the segmentation network's weights (the generator, for pix2pix)
    config        the whole resolved experiment config
    -- for resuming (absent in inference-only files) --
    optimizer, scheduler, scaler, epoch, step, batch_in_epoch, rng, early_stopping,
    (pix2pix: discriminator, optimizer_d, scheduler_d, scaler_d)

Writes are atomic (see `seg.fs.write_bytes_atomic`): a kill never leaves a broken file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch

from seg import fs as segfs
from seg.errors import CheckpointError

FORMAT = "seg-checkpoint/1"


@dataclass(frozen=True)
class CheckpointInfo:
    """What prediction needs to know about a trained network, besides its weights."""

    model: dict[str, Any] = field(hash=False)  # resolved model section (+ in/out channels)
    class_names: tuple[str, ...]
    bands: tuple[int, ...]  # 1-based scene bands, in the order the network reads them
    mean: tuple[float, ...]  # per-band normalisation of the training data
    std: tuple[float, ...]
    size: int  # training window size
    dtype: str | None = None  # the training scenes' pixel type; None in old checkpoints
    # "global": every scene is normalised with mean/std above; "scene": each with its own.
    normalise: str = "global"
    # What made it (seg.provenance + the --data URL and store fingerprint); {} in old ones.
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.model["name"])

    @property
    def in_channels(self) -> int:
        return int(self.model["in_channels"])

    @property
    def num_classes(self) -> int:
        return int(self.model["num_classes"])

    def to_state(self) -> dict[str, Any]:
        """The checkpoint entries that describe the network (plain Python only)."""
        state: dict[str, Any] = {
            "model": dict(self.model),
            "class_names": list(self.class_names),
            "bands": list(self.bands),
            "band_stats": {"mean": list(self.mean), "std": list(self.std)},
            "size": self.size,
        }
        if self.dtype is not None:
            state["dtype"] = self.dtype
        state["normalise"] = self.normalise
        state["provenance"] = dict(self.provenance)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], path: str) -> CheckpointInfo:
        """Read and check the description in a loaded checkpoint; CheckpointError if absent."""
        try:
            stats = state["band_stats"]
            info = cls(
                model=dict(state["model"]),
                class_names=tuple(str(c) for c in state["class_names"]),
                bands=tuple(int(b) for b in state["bands"]),
                mean=tuple(float(x) for x in stats["mean"]),
                std=tuple(float(x) for x in stats["std"]),
                size=int(state.get("size") or 512),
                dtype=str(state["dtype"]) if state.get("dtype") else None,
                normalise=str(state.get("normalise") or "global"),
                provenance=dict(state.get("provenance") or {}),
            )
            _ = info.name, info.in_channels, info.num_classes
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} lacks what prediction needs ({exc}); use a checkpoint from `seg train`"
            ) from exc
        if info.normalise not in ("global", "scene"):
            raise CheckpointError(f"{path} names an unknown normalisation {info.normalise!r}")
        if not (len(info.mean) == len(info.std) == len(info.bands) == info.in_channels):
            raise CheckpointError(
                f"{path} is inconsistent: {len(info.bands)} bands, {len(info.mean)} band"
                f" statistics, model with {info.in_channels} input channels"
            )
        return info


def save_checkpoint(
    path: str,
    info: CheckpointInfo,
    weights: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint: the network's description, its weights, and any `extra` entries."""
    state = {**info.to_state(), "state_dict": weights, **(extra or {})}
    segfs.write_bytes_atomic(path, _serialise(state))


def _serialise(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return buf.getvalue()


def read_checkpoint(path: str) -> tuple[CheckpointInfo, dict[str, Any]]:
    """A checkpoint's description and its whole state (weights under "state_dict")."""
    state = load_checkpoint(path)
    return CheckpointInfo.from_state(state, path), state


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True); clear error when it is not ours."""
    try:
        data = segfs.read_bytes(path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(
            f"checkpoint {path} is a folder; give the file (e.g. {segfs.join(path, 'best.pt')})"
        ) from exc
    except Exception as exc:
        raise segfs.unreachable(path, exc) from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        # Any failure of the restricted unpickler means the bytes are not a checkpoint we can
        # load safely (text, truncated file, foreign objects); it never runs code from them.
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path} is not a readable seg checkpoint (corrupt, truncated, or it holds objects"
            f" that are not allowed to load safely): {reason}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a seg checkpoint (no '{FORMAT}' marker); train one with `seg train`"
        )
    return state


# --- resuming a run (seg train) --------------------------------------------------------------

LATEST = "latest.json"


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states as tensors/lists (loadable with weights_only)."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [
            name,
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            pos,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])


def save_run_checkpoints(
    run_dir: str, names: list[str], state: dict[str, Any], keep: int | None = None
) -> None:
    """Save `state` under each of `names` in `run_dir` (serialised once), then `last.pt`, and
    only then point `latest.json` at it: a kill at any moment leaves a complete latest."""
    import json

    data = _serialise(state)
    for name in [*names, "last.pt"]:
        segfs.write_bytes_atomic(segfs.join(run_dir, name), data)
        prune_snapshots(run_dir, name, keep)
    pointer = {"checkpoint": "last.pt", "step": int(state.get("step", 0))}
    segfs.write_bytes_atomic(segfs.join(run_dir, LATEST), json.dumps(pointer).encode())


def _candidates(run_dir: str) -> list[str]:
    fs, root = segfs.filesystem(run_dir)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return []
    return [
        segfs.join(run_dir, n) for n in sorted(names) if n.endswith(".pt") and not n.startswith(".")
    ]


def find_resume(run_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The newest complete checkpoint in `run_dir` (the one `latest.json` names; if that is
    missing or unreadable, the readable `*.pt` with the highest step), or None for a fresh run."""
    import json

    pointer = segfs.join(run_dir, LATEST)
    if segfs.exists(pointer):
        try:
            name = json.loads(segfs.read_bytes(pointer))["checkpoint"]
            path = segfs.join(run_dir, name)
            return path, load_checkpoint(path)
        except (CheckpointError, ValueError, KeyError, TypeError):
            pass  # fall back to scanning: a broken pointer must not block resuming
    best: tuple[str, dict[str, Any]] | None = None
    for path in _candidates(run_dir):
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue  # a torn or foreign file: skip it, an older good one is still usable
        if "optimizer" in state and (best is None or state.get("step", 0) > best[1].get("step", 0)):
            best = (path, state)
    return best


def has_run(run_dir: str) -> bool:
    """True when `run_dir` already holds checkpoints of a run."""
    return segfs.exists(segfs.join(run_dir, LATEST)) or bool(_candidates(run_dir))


def check_compatible(
    state: dict[str, Any], path: str, *, model_name: str, in_channels: int, num_classes: int
) -> None:
    """Refuse a checkpoint made for another model, band count or class count."""
    have = state.get("model", {})
    theirs = (have.get("name"), have.get("in_channels"), have.get("num_classes"))
    ours = (model_name, in_channels, num_classes)
    if theirs != ours:
        raise CheckpointError(
            f"checkpoint {path} is for model {theirs[0]!r} with {theirs[1]} bands and {theirs[2]}"
            f" classes, but this run is {ours[0]!r} with {ours[1]} bands and {ours[2]} classes;"
            " use a checkpoint of the same model and data, or another --out"
        )


def prune_snapshots(run_dir: str, name: str, keep: int | None) -> None:
    """Keep the newest `keep` periodic snapshots of the kind of `name` (step_* or epoch_*)."""
    kind = name.split("_")[0]
    if keep is None or kind not in ("step", "epoch"):
        return
    fs, _ = segfs.filesystem(run_dir)
    snaps = [p for p in _candidates(run_dir) if p.rsplit("/", 1)[-1].startswith(kind + "_")]
    snaps.sort(key=lambda p: int(p.rsplit("_", 1)[-1].split(".")[0]))
    for old in snaps[:-keep]:
        fs.rm(segfs.filesystem(old)[1])


def choose_resume(run_dir: str, resume: str | None) -> tuple[str, dict[str, Any]] | None:
    """What `--resume` means: "auto" = newest complete checkpoint in run_dir (or a fresh run),
    a path = that checkpoint, None = a fresh run, refused when run_dir already holds one."""
    if resume == "auto":
        found = find_resume(run_dir)
        if found is None and has_run(run_dir):  # never start over on top of a run's files
            raise CheckpointError(
                f"{run_dir} holds checkpoints but none is readable; move them away to start"
                " again, or choose another --out"
            )
        return found
    if resume:
        return resume, load_checkpoint(resume)
    if has_run(run_dir):
        from seg.errors import ConfigError

        raise ConfigError(
            f"{run_dir} already holds a training run; continue it with --resume auto,"
            " or choose another --out"
        )
    return None
