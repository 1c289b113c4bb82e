"""The fixed validation windows a run previews, kept as the network sees them.

Training writes them once per process to RUN/previews/windows.npz (prepared exactly as
validation prepares them: normalised, padded, with the scene's metadata vector when the network
is conditioned), so that `seg ui` can show a chosen window's activations at any layer without
opening the data store again.
"""

from __future__ import annotations

import io

import numpy as np

from seg import fs as segfs
from seg.errors import InputError


def windows_path(run_dir: str) -> str:
    return segfs.join(run_dir, "previews", "windows.npz")


def write_windows(run_dir: str, images: np.ndarray, meta: np.ndarray | None) -> None:
    """images (N, C, S, S) float, meta (N, M) or None -> RUN/previews/windows.npz (float16 for
    the images: a view, not a training input; atomic)."""
    arrays = {"images": images.astype(np.float16)}
    if meta is not None:
        arrays["meta"] = meta.astype(np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    segfs.write_bytes_atomic(windows_path(run_dir), buffer.getvalue())


def read_windows(run_dir: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(images (N, C, S, S) float32, meta (N, M) float32 or None) of a run."""
    path = windows_path(run_dir)
    if not segfs.exists(path):
        raise InputError(
            f"{run_dir} has no preview windows ({path}): training writes them at its first"
            " validation when train.preview_windows > 0"
        )
    try:
        with np.load(io.BytesIO(segfs.read_bytes(path)), allow_pickle=False) as data:
            images = data["images"].astype(np.float32)
            meta = data["meta"].astype(np.float32) if "meta" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path} is damaged ({exc}); the next validation rewrites it") from exc
    return images, meta
