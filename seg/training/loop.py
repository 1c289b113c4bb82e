"""`seg train`: the training loop over a window store, for any `Step` (seg.training.steps).

The loop owns what every model shares: data, resume, checkpoints (last / best / every N, with
`latest.json` moved only after a file is complete), SIGTERM/SIGINT (checkpoint, then exit 75),
NaN guard, validation, early stopping, logging and DDP. Per-batch work belongs to the step.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from seg import fs as segfs
from seg.config import dump_yaml
from seg.data.dataset import train_loader
from seg.errors import SegError
from seg.evaluation.metrics import metric_value
from seg.provenance import as_comment
from seg.training.control import ControlWatch
from seg.training.cut_mix import cut_mix
from seg.training.logbook import EpochBar, Logbook
from seg.training.session import Session
from seg.training.zoom_out import zoom_batch


@dataclass
class TrainResult:
    run_dir: str
    epoch: int
    step: int
    best: float | None
    metric: str
    reason: str
    windows_seen: int = 0  # by this invocation
    spent: dict[str, float] | None = None  # a budgeted run: seconds per part (Budget.summary)


class Trainer(Session):
    """The loop over epochs and steps of a `Session` (what the run is set up with)."""

    def _loader(self) -> DataLoader[Any]:
        return train_loader(
            self.train_set, self.cfg, epoch=self.epoch, batches=self.steps_per_epoch,
            start_batch=self.batch_in_epoch, rank=self.ddp.rank, world=self.ddp.world,
            pin_memory=self.device.type == "cuda", weights=self.draws.weights(self.epoch),
        )  # fmt: skip

    def _mix_seed(self) -> int:
        """The cut-mix draw of this step and rank: fixed by the run's seed, so resume repeats it."""
        return (self.cfg.train.seed * 1_000_003 + self.global_step) * 64 + self.ddp.rank

    def _batches(self) -> Iterator[tuple[list[torch.Tensor], np.ndarray]]:
        """The epoch's batches, each with its (B,) window indices. A SIGTERM sent to the whole
        process group also kills the DataLoader workers; that is a preemption too (checkpoint,
        exit 75), not a crash."""
        loader = self._loader()
        order = np.array([i for i, _ in loader.sampler], np.int64)  # the sampler's draws, in order
        size, it = self.cfg.data.batch_size, iter(loader)
        for k in itertools.count():
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            except SegError as exc:  # from a DataLoader worker: torch put its traceback in
                raise type(exc)(worker_message(exc)) from None
            except RuntimeError as exc:
                if "killed by signal" not in str(exc) and self.signal is None:
                    raise
                self.signal = self.signal or "a signal to the DataLoader workers"
                raise self._preempt() from exc
            if self.plan:
                self.plan.charge("data", time.perf_counter() - t0)
            yield batch, order[k * size : (k + 1) * size]

    def run(self) -> TrainResult:
        # control.json (seg.training.control): a search stops a hopeless trial through it.
        self.control, self.stop_asked = ControlWatch(self.out), ""
        self.epoch_stats: dict[str, float] = {}
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log = (
            Logbook(
                self.out,
                (self.global_step, self.epoch) if self.resume_from else None,
                self.reporter,
            )
            if self.ddp.is_main
            else None
        )
        try:
            if self.ddp.is_main:
                text = as_comment(self.provenance) + dump_yaml(self.cfg)
                segfs.write_bytes_atomic(segfs.join(self.out, "config.yaml"), text.encode())
                self.describe_run()
            result = self._loop(log)
            if self.ddp.is_main:
                summary = {k: v for k, v in vars(result).items() if k != "run_dir"}
                blob = json.dumps({**summary, "budget_s": self.cfg.train.time_budget_s}, indent=1)
                segfs.write_bytes_atomic(segfs.join(self.out, "summary.json"), blob.encode())
            return result
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if log:
                log.close()
            self.lock.release()

    def _stop_asked(self, asked: str | None) -> str:
        """Rank 0's control.json request, agreed by every rank ("" = none)."""
        if self.ddp.agree([float(asked is not None)])[0]:
            return asked or "stopped through control.json"
        return ""

    def _loop(self, log: Logbook | None) -> TrainResult:
        plan, es = self.plan, self.cfg.early_stopping
        reason = "epochs done"
        # asked to stop before it began (a pruned trial run again): not one step more
        self.stop_asked = self._stop_asked(self.control.poll() if self.ddp.is_main else None)
        with EpochBar(self.reporter) as bar:
            while self.epoch < self.epochs and self.global_step < self.total_steps:
                if self.stop_asked:
                    break
                t0 = time.perf_counter()
                losses, speed = self._train_epoch(log, bar)
                if self.stop_asked:
                    break
                last = self.epoch + 1 >= self.epochs or self.global_step >= self.total_steps
                if plan is None or plan.time_up or last or plan.validation_due():
                    self._validate_and_save(
                        log, losses, speed, t0, final=plan is not None and (plan.time_up or last)
                    )
                else:  # a budgeted run validates a few times, evenly in time (seg.training.budget)
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if self.ddp.agree([float(self.signal is not None)])[0]:
                    raise self._preempt()
                if self.stopping.should_stop:
                    reason = f"early stopping: {es.metric} flat for {es.patience} epochs"
                    break
                if plan and plan.time_up:
                    reason = f"time budget of {plan.seconds:.0f} s reached"
                    break
            else:
                reason = "epochs done" if self.epoch >= self.epochs else "max steps reached"
        if self.stop_asked:  # keep what was trained: last.pt, then end with the reason
            self.save()
            reason = self.stop_asked
        spent = plan.summary() if plan else None
        return TrainResult(self.out, self.epoch, self.global_step, self.stopping.best,
                           es.metric, reason, self.windows_seen, spent)  # fmt: skip

    def _validate_and_save(
        self, log: Logbook | None, losses: list[float], speed: float, t0: float, *, final: bool
    ) -> None:
        """Validate, log, then save last.pt (+ best.pt, + the periodic epoch snapshot); a
        budgeted run charges the time to its plan and moves its LR horizon, and its end (`final`)
        is its best.pt: the schedule is planned to end decayed there, and a mid-run validation on
        a subsample is too noisy to overrule it (docs/recipe.md rows 71 and 134)."""
        cfg, plan, v0 = self.cfg, self.plan, time.perf_counter()
        improved = self._end_epoch(log, losses, speed, t0, final=final)
        c0 = time.perf_counter()
        snaps = ["best.pt"] if improved else []
        every = cfg.checkpoint.every_epochs
        if every and self.epoch % every == 0 and plan is None:
            snaps.append(f"epoch_{self.epoch:04d}.pt")
        self.save(*snaps)
        if plan:
            plan.charge("validation", c0 - v0)
            plan.charge("checkpoints", time.perf_counter() - c0)
            plan.validations += 1
            plan.last_validation = plan.elapsed()
            plan.replan(self.global_step, self.val_windows, cfg.data.batch_size)

    def _train_epoch(self, log: Logbook | None, bar: EpochBar) -> tuple[list[float], float]:
        """Train until the epoch's batches run out or max_steps; (losses, windows/s)."""
        cfg, losses, speed = self.cfg, [], 0.0
        bar.start_epoch(self.epoch, self.steps_per_epoch, self.batch_in_epoch)
        self.step.train()
        plan, batch = self.plan, cfg.data.batch_size
        sums: dict[str, list[float]] = {}  # the step's figures -> [sum, count] of finite values
        mixed = cfg.augment.cut_mix
        if mixed == "auto":  # the Session resolves it from the store's band count
            raise ValueError("augment.cut_mix auto must be resolved (resolve_augment) first")
        for (image, mask, *meta), drawn in self._batches():  # meta: [(B, M)] when conditioned
            if plan and self.ddp.agree([float(plan.out_of_time(self.val_windows, batch))])[0]:
                plan.time_up = True  # every rank stops at the same step
                break
            s0 = time.perf_counter()
            cond = meta[0].to(self.device) if meta else None
            if mixed and not meta:  # a conditioned window keeps its own scene's context
                image, mask = cut_mix(image, mask, mixed, self._mix_seed())
            if cfg.augment.zoom_out:  # after cut-mix: the pasted square shrinks with its window
                scale, seed = cfg.model.scale, ~self._mix_seed()  # not cut-mix's draw
                image, mask = zoom_batch(image, mask, cfg.augment, scale=scale, seed=seed)
            out = self.step.train_step(image.to(self.device), mask.to(self.device), cond)
            lost = not math.isfinite(out["loss"])
            asked = self.control.poll() if self.ddp.is_main else None
            lr_id, lr = (self.control.lr or (0.0, 0.0)) if self.ddp.is_main else (0.0, 0.0)
            # one collective per step for every request: a signal, a NaN, a control.json stop,
            # a new LR (rank 0's: the others send 0, and the max is rank 0's)
            flags = [float(self.signal is not None), float(lost), float(asked is not None)]
            stop, bad, halt, lr_id, lr = self.ddp.agree([*flags, lr_id, lr])
            if bad:
                raise self._diverged(out["loss"])
            self.draws.observe(drawn, self.step.window_losses, self.ddp)
            if lr_id > self.lr_applied:
                self._set_lr(log, lr, lr_id)
            for key, value in out.items():
                if isinstance(value, float) and math.isfinite(value):
                    total = sums.setdefault(key, [0.0, 0.0])
                    total[0], total[1] = total[0] + value, total[1] + 1
            self.step.step_schedulers()
            self.global_step += 1
            self.batch_in_epoch += 1
            self.windows_seen += image.shape[0] * self.ddp.world
            if plan:
                plan.charge("train", time.perf_counter() - s0)
                plan.steps += 1
                if plan.steps == 1:
                    plan.check_enough(self.val_windows, batch)
                if plan.steps in (2, 5, 20):  # first estimates of the step time
                    plan.replan(self.global_step, self.val_windows, batch)
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
            if halt:
                self.stop_asked = asked or "stopped through control.json"
                break
            if self.global_step >= self.total_steps:
                break
        self.epoch_stats = {f"train_{k}": t[0] / t[1] for k, t in sums.items() if k != "loss"}
        return losses, speed

    def _set_lr(self, log: Logbook | None, lr: float, lr_id: float) -> None:
        """An LR request from control.json: from the next step on the schedule continues from
        `lr` (every LR it will give is scaled by lr / the current LR)."""
        before = self.step.lr()
        self.step.scale_lr(lr / before)
        self.lr_applied = lr_id
        if log:
            log.event(self.global_step, f"lr set to {lr:g} (was {before:g}) through control.json")

    def _end_epoch(
        self, log: Logbook | None, losses: list[float], speed: float, t0: float, *, final: bool
    ) -> bool:
        """Validate, update early stopping, log; True when the metric improved (or `final`:
        the end of a budgeted run, which becomes the best)."""
        cfg = self.cfg
        result = self.validator.run(
            self.step, lambda: self.ddp.agree([float(self.signal is not None)])[0] > 0
        )
        if not result:  # a signal arrived during validation
            raise self._preempt()
        value = metric_value(cfg.early_stopping.metric, result)
        improved = self.stopping.update(value, self.epoch, final=final)
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "train_loss": float(sum(losses) / len(losses)) if losses else math.nan,
            "lr": self.step.lr(),
            "windows_per_s": speed,
            "elapsed_s": time.perf_counter() - t0,
            **self.epoch_stats,
            **result,
        }
        if log:
            preview = self.validator.preview(self.step) if cfg.train.preview_windows else None
            if preview is not None:
                log.windows(*self.validator.preview_inputs())  # what seg ui's activations use
            log.epoch(record, preview)
        self.epoch += 1
        self.batch_in_epoch = 0
        return improved


def worker_message(exc: BaseException) -> str:
    """The message of an error raised in a DataLoader worker, without the worker traceback torch
    adds ("Caught StoreError in DataLoader worker process 0. Original Traceback ...")."""
    lines = [s for s in str(exc).splitlines() if s.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return str(exc)
