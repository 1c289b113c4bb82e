"""The predictions time-lapse of a run: the fixed validation windows as image | truth |
prediction, one frame per epoch, kept in RUN/previews/ and assembled into a GIF or MP4.

Training writes a frame after every validation (`write_frame`); `seg ui` plays them with a
slider; `seg timelapse RUN --out run.gif|run.mp4` exports them, each frame captioned with its
epoch, step and validation mIoU from metrics.jsonl. A frame keeps each window at no more than
FRAME_TILE px so that fifty epochs of four 512 px windows stay a few MB.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from seg import fs as segfs
from seg.errors import ConfigError, InputError, ResourceError
from seg.report import SILENT, Reporter

FRAME_TILE = 256  # px per window side in a stored frame (larger windows are box-averaged down)
FORMATS = (".gif", ".mp4")
_NAME = re.compile(r"^epoch_(\d{4,})\.png$")


@dataclass(frozen=True)
class Frame:
    epoch: int
    path: str  # RUN/previews/epoch_NNNN.png
    step: int | None = None  # from metrics.jsonl, when the epoch has a record
    miou: float | None = None


def frame_path(run_dir: str, epoch: int) -> str:
    return segfs.join(run_dir, "previews", f"epoch_{epoch:04d}.png")


def write_frame(run_dir: str, epoch: int, grid: np.ndarray) -> None:
    """Store one epoch's preview grid (3, N*S, 3*S) uint8 as a PNG (atomic: a resumed epoch
    overwrites the frame the killed run may have left)."""
    window = grid.shape[2] // 3
    image = Image.fromarray(np.ascontiguousarray(grid.transpose(1, 2, 0)))  # (H, W, 3)
    factor = -(-window // FRAME_TILE)  # ceil: a 512 px window is halved, 256 kept
    if factor > 1:
        image = image.reduce(factor)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    segfs.write_bytes_atomic(frame_path(run_dir, epoch), buffer.getvalue())


def frames(run_dir: str, records: Sequence[object] | None = None) -> list[Frame]:
    """The run's frames in epoch order, captioned from metrics.jsonl where it has the epoch
    (`records`: its lines when the caller has read them already)."""
    folder = segfs.join(run_dir, "previews")
    if not segfs.exists(folder):
        return []
    fs, root = segfs.filesystem(folder)
    epochs = sorted(
        int(m.group(1))
        for p in fs.ls(root, detail=False)
        if (m := _NAME.match(str(p).rstrip("/").rsplit("/", 1)[-1]))
    )
    by_epoch = _records(run_dir) if records is None else _by_epoch(records)
    out = []
    for e in epochs:
        r = by_epoch.get(e, {})
        step, miou = r.get("step"), r.get("miou")
        out.append(Frame(e, frame_path(run_dir, e), step if isinstance(step, int) else None,
                         float(miou) if _finite(miou) else None))  # type: ignore[arg-type]  # fmt: skip
    return out


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and np.isfinite(v)


def _records(run_dir: str) -> dict[int, dict[str, object]]:
    """metrics.jsonl by epoch; a torn or foreign line is skipped (the frame just has no caption)."""
    path = segfs.join(run_dir, "metrics.jsonl")
    if not segfs.exists(path):
        return {}
    records = []
    for line in segfs.read_bytes(path).decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return _by_epoch(records)


def _by_epoch(records: Sequence[object]) -> dict[int, dict[str, object]]:
    """Records by their epoch; anything without an integer epoch is left out."""
    return {
        r["epoch"]: r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)
    }


def caption(frame: Frame) -> str:
    text = f"epoch {frame.epoch}"
    if frame.step is not None:
        text += f"  step {frame.step}"
    if frame.miou is not None:
        text += f"  val mIoU {frame.miou:.3f}"
    return text


def render(frame: Frame) -> Image.Image:
    """The stored frame with a caption bar on top, RGB."""
    try:
        grid = Image.open(io.BytesIO(segfs.read_bytes(frame.path))).convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"{frame.path}: not a readable PNG frame ({exc}); delete it") from exc
    bar = 18
    out = Image.new("RGB", (grid.width, grid.height + bar), (255, 255, 255))
    out.paste(grid, (0, bar))
    ImageDraw.Draw(out).text((4, 3), caption(frame), fill=(0, 0, 0))
    return out


def ffmpeg() -> str:
    """An ffmpeg executable: the one on PATH, else the one imageio-ffmpeg ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise ResourceError(
            "writing an .mp4 needs ffmpeg: `apt-get install ffmpeg` or `pip install"
            " imageio-ffmpeg`, or write a .gif instead"
        ) from exc


def make_timelapse(run_dir: str, out: str, *, fps: float = 2.0, reporter: Reporter = SILENT) -> int:
    """Write the run's frames to `out` (.gif or .mp4, local or gs://); returns the frame count.
    Nothing is written unless every frame was read and encoded."""
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out {out!r}: choose a file ending in one of {list(FORMATS)}")
    if not fps > 0:
        raise ConfigError(f"--fps {fps}: give a positive number of frames per second")
    if not segfs.exists(run_dir):
        raise InputError(f"{run_dir}: no such run folder")
    found = frames(run_dir)
    if not found:
        raise InputError(
            f"{run_dir} has no preview frames (RUN/previews/): they are written after each"
            " validation when train.preview_windows > 0"
        )
    bar = reporter.bar("timelapse", total=len(found))
    images = []
    for frame in found:
        images.append(render(frame))
        bar.advance()
    bar.close()
    with tempfile.TemporaryDirectory(prefix="seg-timelapse-") as tmp:
        local = os.path.join(tmp, "out" + suffix)
        if suffix == ".gif":
            images[0].save(local, save_all=True, append_images=images[1:],
                           duration=int(1000 / fps), loop=0)  # fmt: skip
        else:
            _mp4(images, local, fps)
        with open(local, "rb") as f:
            data = f.read()
    segfs.write_bytes_atomic(out, data)
    return len(images)


def _mp4(images: list[Image.Image], path: str, fps: float) -> None:
    """H.264 in yuv420p (plays everywhere), so both sides are padded to even."""
    width = max(i.width for i in images) + max(i.width for i in images) % 2
    height = max(i.height for i in images) + max(i.height for i in images) % 2
    cmd = [ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", path]  # fmt: skip
    raw = bytearray()
    for image in images:
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(image, (0, 0))
        raw += canvas.tobytes()
    done = subprocess.run(cmd, input=bytes(raw), capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise ResourceError(f"ffmpeg failed: {message[-1] if message else done.returncode}")
