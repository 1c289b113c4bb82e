"""`run_training()`: the CLI's one call for `seg train`: load and check the config, train, and
turn running out of memory into one line that says which batch size to try."""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from seg import fs as segfs
from seg.config import TrainConfig, load_config
from seg.errors import Diverged, Preempted, ResourceError
from seg.models import model_entry
from seg.notify import message, send
from seg.report import SILENT, Reporter
from seg.training import runtime
from seg.training.loop import Trainer, TrainResult

OUTCOME = "outcome.json"


def run_training(
    config: str | None,
    data: str,
    out: str,
    *,
    overrides: list[str] | None = None,
    resume: str | None = None,
    gpus: str | None = None,
    reporter: Reporter = SILENT,
) -> TrainResult:
    """Load the config and train; the CLI's one call."""
    cfg = load_config(TrainConfig, config, overrides)
    model_entry(cfg.model.name)  # an unknown model is a config error before any work
    started = time.monotonic()
    event: str = "failed"
    facts: dict[str, Any] = {}
    try:
        result = _train(cfg, data, out, resume=resume, gpus=gpus, reporter=reporter)
        event = "finished"
        facts = {"best": {result.metric: result.best}, "epoch": result.epoch,
                 "step": result.step, "reason": result.reason,
                 "checkpoint": segfs.join(out, "best.pt")}  # fmt: skip
        return result
    except Preempted as exc:
        event, facts = "preempted", {"reason": str(exc)}
        raise
    except Diverged as exc:
        event, facts = "diverged", {"error": str(exc)}
        raise
    except BaseException as exc:
        facts = {"error": (str(exc).splitlines() or [type(exc).__name__])[0][:300]}
        raise
    finally:
        if runtime.rank_is_main():
            _record_outcome(out, event, facts)
        if cfg.notify is not None and runtime.rank_is_main():
            body = message(event, out, seconds=round(time.monotonic() - started, 1), **facts)
            for warning in send(cfg.notify, body):
                reporter.warn(warning)


def _record_outcome(out: str, event: str, facts: dict[str, Any]) -> None:
    """RUN_DIR/outcome.json: how the run's last process ended (finished, preempted, diverged,
    failed), for `seg ui` and scripts. Only in a folder the run began writing (its config.yaml):
    a refused start leaves nothing behind."""
    try:
        if not segfs.exists(segfs.join(out, "config.yaml")):
            return
        blob = json.dumps({"state": event, "at": time.time(), **facts}, default=str)
        segfs.write_bytes_atomic(segfs.join(out, OUTCOME), blob.encode())
    except OSError:
        pass  # the run's own error (an unwritable folder) is the one to report


def _train(
    cfg: TrainConfig,
    data: str,
    out: str,
    *,
    resume: str | None,
    gpus: str | None,
    reporter: Reporter,
) -> TrainResult:
    try:
        return Trainer(cfg, data, out, resume=resume, gpus=gpus, reporter=reporter).run()
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        # CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError naming the failure.
        oom = isinstance(exc, torch.OutOfMemoryError | MemoryError)
        if not oom and "can't allocate memory" not in str(exc):
            raise
        raise ResourceError(
            f"out of memory at data.batch_size={cfg.data.batch_size}; lower the batch size"
            f" (e.g. --set data.batch_size={max(1, cfg.data.batch_size // 2)})"
        ) from exc
    finally:
        runtime.shutdown_distributed()
