"""Self-describing checkpoints: one file holds what `predict` needs and what `train` resumes.

A checkpoint is a plain dict saved with `torch.save` and loaded with `weights_only=True`, so
loading never runs code from the file. What crosses to prediction is a `CheckpointInfo`, read
and written here only; the rest is the training run's own state:

    format        "seg-checkpoint/1"
    model         {"name": ..., "in_channels": C, "num_classes": K, ...}  (CheckpointInfo)
    class_names   list[str]                                               (CheckpointInfo)
    bands         list[int]  1-based scene bands the network reads        (CheckpointInfo)
    band_stats    {"mean": [C floats], "std": [C floats]}                 (CheckpointInfo)
    normalise     "global" (band_stats for every scene), "scene", "percentile" (CheckpointInfo)
    provenance    seg/torch/smp versions, git commit, --data, store print (CheckpointInfo)
    size          training window size                                    (CheckpointInfo)
    dtype         the training scenes' pixel type                         (CheckpointInfo)
    metadata      the fitted metadata codec of a conditioned network      (CheckpointInfo)
    class_prior   [K floats] class shares of the training labels          (CheckpointInfo)
    calibration   {"temperature", "bias", "prior"} fitted on val pixels     (CheckpointInfo)
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
    # "global": every scene is normalised with mean/std above; "scene": each with its own;
    # "percentile": each by its own percentile stretch (seg.data.window_prep.Normalisation).
    normalise: str = "global"
    # What made it (seg.provenance + the --data URL and store fingerprint); {} in old ones.
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # A network conditioned on scene metadata: its codec (seg.data.scene_metadata); else None.
    metadata: dict[str, Any] | None = field(default=None, hash=False)
    # Class shares of the training labels (seg.inference.priors adapts to a scene's); None in
    # old checkpoints.
    class_prior: tuple[float, ...] | None = None
    # The posteriors' calibration on the val split (seg.evaluation.calibration), which the
    # class-share estimate reads them through; None in old checkpoints or without val pixels.
    calibration: dict[str, Any] | None = field(default=None, hash=False)

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
        if self.metadata is not None:
            state["metadata"] = dict(self.metadata)
        if self.class_prior is not None:
            state["class_prior"] = list(self.class_prior)
        if self.calibration is not None:
            state["calibration"] = dict(self.calibration)
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
                metadata=dict(state["metadata"]) if state.get("metadata") else None,
                class_prior=(
                    tuple(float(x) for x in state["class_prior"])
                    if state.get("class_prior") is not None
                    else None
                ),
                calibration=dict(state["calibration"]) if state.get("calibration") else None,
            )
            _ = info.name, info.in_channels, info.num_classes
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} lacks what prediction needs ({exc}); use a checkpoint from `seg train`"
            ) from exc
        if info.normalise not in ("global", "scene", "percentile"):
            raise CheckpointError(f"{path} names an unknown normalisation {info.normalise!r}")
        if not (len(info.mean) == len(info.std) == len(info.bands) == info.in_channels):
            raise CheckpointError(
                f"{path} is inconsistent: {len(info.bands)} bands, {len(info.mean)} band"
                f" statistics, model with {info.in_channels} input channels"
            )
        if info.class_prior is not None and len(info.class_prior) != info.num_classes:
            raise CheckpointError(
                f"{path} is inconsistent: {len(info.class_prior)} class priors for"
                f" {info.num_classes} classes"
            )
        cal = info.calibration
        if cal is not None and not (
            len(cal.get("bias", ())) == len(cal.get("prior", ())) == info.num_classes
            and float(cal.get("temperature", 0)) > 0
        ):
            raise CheckpointError(
                f"{path} is inconsistent: its calibration does not describe {info.num_classes}"
                " classes with a positive temperature"
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
    segfs.write_bytes_atomic(path, serialise(state))


def serialise(state: dict[str, Any]) -> bytes:
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
