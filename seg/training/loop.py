"""`seg train`: the training loop over a window store, for any `Step` (seg.training.steps).

The loop owns what every model shares: data, resume, checkpoints (last / best / every N, with
`latest.json` moved only after a file is complete), SIGTERM/SIGINT (checkpoint, then exit 75),
NaN guard, validation, early stopping, logging and DDP. Per-batch work belongs to the step.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from seg import checkpoint as ckpt
from seg import fs as segfs
from seg.checkpoint import CheckpointInfo
from seg.config import TrainConfig, dump_yaml
from seg.data.dataset import build_datasets, open_data, train_loader
from seg.data.window_prep import Normalisation
from seg.errors import Diverged, Preempted
from seg.report import SILENT, Reporter
from seg.training import runtime
from seg.training.logbook import EpochBar, Logbook
from seg.training.steps import Step, StepSpec
from seg.training.trainers import build_step
from seg.training.validation import EarlyStopping, Validator, check_metric_name, metric_value


@dataclass
class TrainResult:
    run_dir: str
    epoch: int
    step: int
    best: float | None
    metric: str
    reason: str


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: str,
        out: str,
        *,
        resume: str | None = None,
        gpus: str | None = None,
        reporter: Reporter = SILENT,
    ) -> None:
        self.reporter = reporter if runtime.rank_is_main() else SILENT
        gpu_list = runtime.parse_gpus(gpus)
        self.ddp = runtime.init_distributed(runtime.wants_cuda(cfg.train, gpu_list))
        self.cfg, self.out = cfg, out
        self.data = info = open_data(data, cfg.data)
        self.classes, self.bands, self.size = info.classes, info.bands, info.size
        check_metric_name(cfg.early_stopping.metric, self.classes)
        if self.ddp.is_main:
            segfs.check_writable(out)
        self.device = runtime.select_device(cfg.train, gpu_list, self.ddp)
        self.resume_from = ckpt.choose_resume(out, resume)
        resume_path, state = self.resume_from or ("", None)
        bands, size = info.bands, info.size
        amp = runtime.amp_dtype(cfg.train, self.device)
        runtime.preflight(cfg, self.device, bands, size, amp is not None)
        runtime.seed_everything(cfg.train.seed + self.ddp.rank, cfg.train.deterministic)
        if state:
            ckpt.check_compatible(state, resume_path, cfg.model.name, bands, len(self.classes))
        self.norm = (
            Normalisation.from_json(state["band_stats"])
            if state
            else Normalisation.from_store(info.store, info.train_ids)
        )
        self.train_set, val_set = build_datasets(info, self.norm, cfg)
        d = cfg.data
        per_rank = len(self.train_set) // (d.batch_size * self.ddp.world)
        self.steps_per_epoch = cfg.train.steps_per_epoch or max(1, per_rank)
        total = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.train.max_steps or total)
        spec = StepSpec(
            in_channels=bands,
            num_classes=len(self.classes),
            device=self.device,
            amp_dtype=amp,
            channels_last=cfg.train.channels_last,
            compile=cfg.train.compile,
            total_steps=self.total_steps,
            distributed=self.ddp.enabled,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            reporter=self.reporter,
        )
        self.step: Step = build_step(cfg, spec)
        if cfg.model.encoder_weights and not state:
            from seg.models.unet import load_encoder_weights

            load_encoder_weights(self.step.generator, cfg.model.encoder_weights)
        self.validator = Validator(val_set, cfg, self.device, self.ddp, self.classes)
        self.stopping = EarlyStopping(cfg.early_stopping)
        self.epoch = self.global_step = self.batch_in_epoch = 0
        if state:
            self.step.load_state_dict(state)
            self.epoch, self.global_step = int(state["epoch"]), int(state["step"])
            self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
            self.stopping.load_state_dict(state.get("early_stopping", {}))
            ckpt.set_rng_state(state["rng"])
        self.signal: str | None = None

    # -- checkpoints ---------------------------------------------------------------------------

    def info(self) -> CheckpointInfo:
        """What `seg predict` needs to know about the network this run trains."""
        return CheckpointInfo(
            model={
                **self.cfg.model.model_dump(),
                "in_channels": self.bands,
                "num_classes": len(self.classes),
            },
            class_names=tuple(self.classes),
            bands=tuple(self.data.band_ids),
            mean=tuple(float(x) for x in self.norm.mean),
            std=tuple(float(x) for x in self.norm.std),
            size=self.size,
            dtype=self.data.dtype,
        )

    def state(self) -> dict[str, Any]:
        return {
            **self.info().to_state(),
            "config": self.cfg.model_dump(mode="json"),
            **self.step.state_dict(),
            "epoch": self.epoch,
            "step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": ckpt.rng_state(),
            "early_stopping": self.stopping.state_dict(),
        }

    def save(self, *names: str) -> None:
        """Save on rank 0: periodic snapshots first, `last.pt` (and the pointer) last."""
        if self.ddp.is_main:
            ckpt.save_run_checkpoints(self.out, list(names), self.state(), self.cfg.checkpoint.keep)
        if self.ddp.enabled:
            dist.barrier()

    # -- the loop ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name

    def _preempt(self) -> Preempted:
        self.save()
        where = segfs.join(self.out, "last.pt")
        return Preempted(
            f"stopped by {self.signal or 'a signal'} at step {self.global_step}; checkpoint saved"
            f" to {where}; run the same command with --resume auto to continue"
        )

    def _loader(self) -> DataLoader[Any]:
        return train_loader(
            self.train_set, self.cfg, self.epoch, self.steps_per_epoch, self.batch_in_epoch,
            self.ddp.rank, self.ddp.world, self.device.type == "cuda",
        )  # fmt: skip

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches. A SIGTERM sent to the whole process group also kills the
        DataLoader workers; that is a preemption too (checkpoint, exit 75), not a crash."""
        it = iter(self._loader())
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except RuntimeError as exc:
                if "killed by signal" not in str(exc) and self.signal is None:
                    raise
                self.signal = self.signal or "a signal to the DataLoader workers"
                raise self._preempt() from exc
            yield batch

    def run(self) -> TrainResult:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log = (
            Logbook(self.out, self.global_step if self.resume_from else None, self.reporter)
            if self.ddp.is_main
            else None
        )
        try:
            if self.ddp.is_main:
                segfs.write_bytes_atomic(
                    segfs.join(self.out, "config.yaml"), dump_yaml(self.cfg).encode()
                )
            return self._loop(log)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if log:
                log.close()

    def _loop(self, log: Logbook | None) -> TrainResult:
        cfg, started, epoch_times = self.cfg, time.perf_counter(), [0.0]
        reason = "epochs done"
        with EpochBar(self.reporter) as bar:
            while self.epoch < cfg.train.epochs and self.global_step < self.total_steps:
                t0 = time.perf_counter()
                losses, speed = self._train_epoch(log, bar)
                improved = self._end_epoch(log, losses, speed, t0)
                snaps = ["best.pt"] if improved else []
                if cfg.checkpoint.every_epochs and self.epoch % cfg.checkpoint.every_epochs == 0:
                    snaps.append(f"epoch_{self.epoch:04d}.pt")
                self.save(*snaps)
                epoch_times.append(time.perf_counter() - t0)
                if self.ddp.agree([float(self.signal is not None)])[0]:
                    raise self._preempt()
                budget, es = cfg.train.time_budget_s, cfg.early_stopping
                if self.stopping.should_stop:
                    reason = f"early stopping: {es.metric} flat for {es.patience} epochs"
                    break
                # Stop before an epoch that would overrun the budget (all ranks agree).
                over = budget and time.perf_counter() - started + max(epoch_times) > budget
                if self.ddp.agree([float(bool(over))])[0]:
                    reason = f"time budget of {budget:.0f} s reached"
                    break
            else:
                reason = "epochs done" if self.epoch >= cfg.train.epochs else "max steps reached"
        es = cfg.early_stopping
        return TrainResult(
            self.out, self.epoch, self.global_step, self.stopping.best, es.metric, reason
        )

    def _train_epoch(self, log: Logbook | None, bar: EpochBar) -> tuple[list[float], float]:
        """Train until the epoch's batches run out or max_steps; (losses, windows/s)."""
        cfg, losses, speed = self.cfg, [], 0.0
        bar.start_epoch(self.epoch, self.steps_per_epoch, self.batch_in_epoch)
        self.step.train()
        for image, mask in self._batches():
            out = self.step.train_step(image.to(self.device), mask.to(self.device))
            lost = not math.isfinite(out["loss"])
            stop, bad = self.ddp.agree([float(self.signal is not None), float(lost)])
            if bad:
                raise self._diverged(out["loss"])
            self.step.step_schedulers()
            self.global_step += 1
            self.batch_in_epoch += 1
            losses.append(out["loss"])
            speed = bar.advance(image.shape[0] * self.ddp.world, out["loss"])
            if log and self.global_step % cfg.train.log_every_steps == 0:
                scalars = {**out, "lr": self.step.lr(), "windows_per_s": speed}
                log.scalars(self.global_step, scalars, "train")
            every = cfg.checkpoint.every_steps
            if every and self.global_step % every == 0:
                self.save(f"step_{self.global_step:08d}.pt")
            if stop:
                raise self._preempt()
            if self.global_step >= self.total_steps:
                break
        return losses, speed

    def _end_epoch(self, log: Logbook | None, losses: list[float], speed: float, t0: float) -> bool:
        """Validate, update early stopping, log; True when the metric improved."""
        cfg = self.cfg
        result = self.validator.run(
            self.step, lambda: self.ddp.agree([float(self.signal is not None)])[0] > 0
        )
        if not result:  # a signal arrived during validation
            raise self._preempt()
        improved = self.stopping.update(metric_value(cfg.early_stopping.metric, result), self.epoch)
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "train_loss": float(sum(losses) / len(losses)) if losses else math.nan,
            "lr": self.step.lr(),
            "windows_per_s": speed,
            "elapsed_s": time.perf_counter() - t0,
            **result,
        }
        if log:
            preview = self.validator.preview(self.step) if cfg.train.preview_windows else None
            log.epoch(record, preview)
        self.epoch += 1
        self.batch_in_epoch = 0
        return improved

    def _diverged(self, loss: float) -> Diverged:
        last = ckpt.find_resume(self.out) if self.ddp.is_main else None
        kept = (
            f"the last good checkpoint is {last[0]} (step {last[1]['step']})"
            if last
            else "no checkpoint was written yet"
        )
        return Diverged(
            f"loss became {loss} at step {self.global_step + 1}; stopped, {kept}."
            " Lower optim.lr, keep optim.grad_clip set, or check the data for NaN/inf values"
        )
