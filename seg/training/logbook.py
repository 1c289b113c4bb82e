"""What a training run records and shows: TensorBoard scalars and preview grids, metrics.jsonl
(one line per epoch), steps.jsonl (one line per logged step, and events: what `seg ui` draws
live), and through the reporter a progress bar (loss, windows/s, ETA) and an
epoch summary line.

RUN_DIR may be gs://: TensorBoard events are written to a local folder and copied to
RUN_DIR/tensorboard after each epoch; metrics.jsonl is rewritten atomically. On resume, entries
the checkpoint does not contain are dropped (those after its step, and those of the epoch it
resumes inside: a kill between an epoch's line and its checkpoint), so a resumed run reads as
one run.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from typing import Any

import numpy as np
import psutil
import torch

from seg import classes
from seg import fs as segfs
from seg.report import SILENT, Bar, Reporter
from seg.training.preview_windows import write_windows
from seg.training.timelapse import write_frame


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (3, H, W) uint8, in the class colours of every seg output."""
    return classes.colour_mask(mask).transpose(2, 0, 1)


def display_image(image: np.ndarray) -> np.ndarray:
    """Normalised (C, H, W) -> (3, H, W) uint8: first three bands (or one repeated), 2-98 %
    stretched, so any band count can be looked at."""
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    lo, hi = np.percentile(bands, 2), np.percentile(bands, 98)
    scaled = (bands - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def preview_grid(images: np.ndarray, truths: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Rows of image | truth | prediction for N windows -> one (3, N*H, 3*W) uint8 image."""
    rows = [
        np.concatenate([display_image(img), colour_mask(t), colour_mask(p)], axis=2)
        for img, t, p in zip(images, truths, preds, strict=True)
    ]
    return np.concatenate(rows, axis=1)


class Logbook:
    """Rank 0's logs in RUN_DIR. `resume` = (step, epoch) of the checkpoint a run resumes
    from: records it does not contain are dropped (`epoch` is the one it resumes inside)."""

    def __init__(
        self, run_dir: str, resume: tuple[int, int] | None, reporter: Reporter = SILENT
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.metrics_path = segfs.join(run_dir, "metrics.jsonl")
        self.remote = segfs.is_remote(run_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="seg-tb-") if self.remote else None
        tb_dir = self._tmp.name if self._tmp else segfs.join(run_dir, "tensorboard")
        resume_step = resume[0] if resume else None
        if self.remote and resume_step is not None:
            self._pull_tensorboard(tb_dir)
        # purge_step: TensorBoard hides events after the resumed step (written before the kill).
        self.tb = SummaryWriter(tb_dir, purge_step=resume_step)
        self.tb_dir = tb_dir
        self.records = self._read_records(resume)
        self.reporter = reporter
        self._windows_written = False
        # steps.jsonl: one line per logged step (and per event), what `seg ui` draws live
        self.steps_path = segfs.join(run_dir, "steps.jsonl")
        self.step_lines = self._read_steps(resume_step)
        self.events: list[str] = []  # since the last epoch record

    def _read_steps(self, step: int | None) -> list[str]:
        """The step lines a resumed run keeps (those up to its checkpoint's step)."""
        if step is None or not segfs.exists(self.steps_path):
            lines: list[str] = []
        else:
            text = segfs.read_bytes(self.steps_path).decode(errors="replace")
            lines = [line for line in text.splitlines() if _step_of(line) <= step]
        segfs.write_bytes_atomic(self.steps_path, "".join(x + "\n" for x in lines).encode())
        return lines

    def _step_line(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        self.step_lines.append(line)
        if not self.remote:  # local: appended as it happens; gs://: rewritten each epoch
            with open(self.steps_path.removeprefix("file://"), "a") as f:
                f.write(line + "\n")

    def event(self, step: int, text: str) -> None:
        """Something that happened to the run (an LR change): TensorBoard text, a step line,
        and the `events` of the next metrics.jsonl record."""
        self.tb.add_text("events", text, step)
        self._step_line({"step": step, "time": time.time(), "event": text})
        self.events.append(text)
        self.reporter.note(f"step {step}: {text}")

    def _read_records(self, resume: tuple[int, int] | None) -> list[dict[str, Any]]:
        if resume is None or not segfs.exists(self.metrics_path):
            return []
        step, epoch = resume
        lines = segfs.read_bytes(self.metrics_path).decode().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        kept = [
            r for r in records if int(r.get("step", 0)) <= step and int(r.get("epoch", 0)) < epoch
        ]
        if len(kept) != len(records):
            self._write_records(kept)
        return kept

    def _write_records(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        segfs.write_bytes_atomic(self.metrics_path, text.encode())

    def _pull_tensorboard(self, local: str) -> None:
        fs, root = segfs.filesystem(segfs.join(self.run_dir, "tensorboard"))
        if fs.exists(root):
            fs.get(root.rstrip("/") + "/", local.rstrip("/") + "/", recursive=True)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
        for key, value in finite.items():
            self.tb.add_scalar(f"{prefix}/{key}", value, step)
        if prefix == "train":
            self._step_line({"step": step, "time": time.time(), **finite, **resources()})

    def windows(self, images: torch.Tensor, meta: torch.Tensor | None) -> None:
        """The preview windows as the network sees them, once per process (seg ui's
        activations)."""
        if not self._windows_written:
            write_windows(self.run_dir, images.numpy(), None if meta is None else meta.numpy())
            self._windows_written = True

    def epoch(self, record: dict[str, Any], preview: np.ndarray | None) -> None:
        """One epoch's record: TensorBoard scalars + preview grid, a metrics.jsonl line, and a
        one-line summary on stderr."""
        step = int(record["step"])
        self.scalars(step, {k: v for k, v in record.items() if isinstance(v, float)}, "epoch")
        for name, values in record.get("per_class", {}).items():
            for metric in ("iou", "f1", "precision", "recall"):
                self.tb.add_scalar(f"val_{metric}/{name}", values[metric], step)
        if preview is not None:
            self.tb.add_image("val/image|truth|prediction", preview, step)
            write_frame(self.run_dir, int(record["epoch"]), preview)  # the time-lapse
        self.tb.flush()
        if self.remote:
            fs, root = segfs.filesystem(segfs.join(self.run_dir, "tensorboard"))
            fs.put(self.tb_dir.rstrip("/") + "/", root.rstrip("/") + "/", recursive=True)
        if self.events:
            record, self.events = {**record, "events": self.events}, []
        self.records.append(record)
        self._write_records(self.records)
        if self.remote:
            text = "".join(x + "\n" for x in self.step_lines)
            segfs.write_bytes_atomic(self.steps_path, text.encode())
        per_class = " ".join(f"{n}={v['iou']:.3f}" for n, v in record.get("per_class", {}).items())
        self.reporter.note(
            f"epoch {record['epoch']} step {step}: train_loss {record['train_loss']:.4f}"
            f" val_loss {record.get('val_loss', float('nan')):.4f} mIoU {record['miou']:.3f}"
            f" (IoU {per_class}) {record['windows_per_s']:.1f} windows/s"
        )

    def close(self) -> None:
        self.tb.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf  # a torn last line (a kill mid-write): dropped


_ME = psutil.Process()


def resources() -> dict[str, float]:
    """Host memory of this process, and the GPU's when training on one, in MB (and the GPU's
    utilisation in % where NVML answers)."""
    out = {"rss_mb": _ME.memory_info().rss / 1e6}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["gpu_mem_mb"] = torch.cuda.memory_allocated() / 1e6
        # torch asks NVML (pynvml) for the utilisation, which not every image has: memory only
        with contextlib.suppress(Exception):
            out["gpu_util_pct"] = float(torch.cuda.utilization())
    return out


class EpochBar:
    """Steps of the current epoch with loss and windows/s (rank 0 only; silent elsewhere)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.bar: Bar = Bar()
        self.started = time.perf_counter()
        self.windows = 0

    def __enter__(self) -> EpochBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def start_epoch(self, epoch: int, total: int, done: int) -> None:
        self.bar.close()
        self.bar = self.reporter.bar(f"epoch {epoch}", total, completed=done)
        self.started, self.windows = time.perf_counter(), 0

    def advance(self, windows: int, loss: float) -> float:
        """Record one step of `windows` windows; returns windows/s so far this epoch."""
        self.windows += windows
        speed = self.windows / max(time.perf_counter() - self.started, 1e-9)
        self.bar.advance(1, note=f"loss {loss:.4f} {speed:.1f} win/s")
        return speed


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
