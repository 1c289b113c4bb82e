"""Self-describing checkpoints: one file holds what `predict` needs and what `train` resumes.

A checkpoint is a plain dict saved with `torch.save` and loaded with `weights_only=True`, so
loading never runs code from the file. Keys (all plain Python / tensors):

    format        "seg-checkpoint/1"
    model         {"name": "unet_mobilenetv2" | "pix2pix", "in_channels": C, "num_classes": K, ...}
                  the resolved model section of the config: enough to rebuild the network
    class_names   list[str]
    bands         list[int]  (1-based band indices read from each scene)
    band_stats    {"mean": [C floats], "std": [C floats]}  normalisation used in training
    size          training window size
    state_dict    the segmentation network's weights (the generator, for pix2pix)
    config        the whole resolved experiment config
    -- for resuming (absent in exported / inference-only files) --
    optimizer, scheduler, scaler, epoch, step, rng, early_stopping, (pix2pix: discriminator,
    optimizer_d, scheduler_d)

Writes are atomic (see `seg.fs.write_bytes_atomic`): a kill never leaves a broken file.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

from seg import fs as segfs
from seg.errors import CheckpointError

FORMAT = "seg-checkpoint/1"


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    segfs.write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True); clear error when it is not ours."""
    try:
        data = segfs.read_bytes(path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except Exception as exc:
        raise segfs.unreachable(path, exc) from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path} is not a readable seg checkpoint (corrupt, truncated, or it holds objects"
            f" that are not allowed to load safely): {str(exc).splitlines()[0][:200]}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a seg checkpoint (no '{FORMAT}' marker); train one with `seg train`"
        )
    return state


def model_from_checkpoint(state: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the segmentation network stored in `state` (eval mode, on CPU)."""
    from seg.models import build_model

    model = build_model(state["model"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit model {state['model'].get('name')!r}: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from exc
    return model.eval()
