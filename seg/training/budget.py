"""A time-budgeted run plans itself (`train.time_budget_s`): `Budget` measures what each part of
the run costs and keeps the LR schedule's horizon (`Horizon`) ending when the budget does.

- the schedule spans the budget: after the first steps, and after every validation, the number
  of steps that still fit is estimated from the measured step time, less what the final
  validation and checkpoint will cost, and the horizon is moved there;
- the run stops at a step, not at an epoch boundary: a step starts only if it and the final
  validation + checkpoint still fit;
- validation and checkpoints are kept to a small share: a run validates (and writes last.pt /
  best.pt) `VALIDATIONS` times, evenly in time, and at the end, on a subsample of the
  validation windows;
- `spent` says where the time went (train, data, validation, checkpoints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from seg.errors import ConfigError

VALIDATIONS = 2  # validations (and checkpoints) before the final one
VAL_WINDOWS = 32  # validation windows of a budgeted run when data.max_val_windows is not set
MIN_EPOCH_STEPS = 20  # a budgeted run's shortest epoch (each epoch restarts the data workers)


@dataclass
class Horizon:
    """How many optimizer steps the LR schedule spans (read by the scheduler at every step)."""

    steps: int


@dataclass
class Budget:
    seconds: float
    horizon: Horizon
    started: float = field(default_factory=lambda: time.perf_counter())
    spent: dict[str, float] = field(
        default_factory=lambda: {"train": 0.0, "data": 0.0, "validation": 0.0, "checkpoints": 0.0}
    )
    steps: int = 0  # steps of this invocation
    validations: int = 0
    last_validation: float = 0.0  # elapsed seconds at the last validation
    time_up: bool = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def charge(self, part: str, seconds: float) -> None:
        self.spent[part] += seconds

    def step_s(self) -> float:
        """Seconds per step so far (training + waiting for data)."""
        return (self.spent["train"] + self.spent["data"]) / max(self.steps, 1)

    def reserve(self, val_windows: int, batch: int) -> float:
        """What the final validation and checkpoint will cost: measured once they ran, else
        estimated (a validation window costs about a third of a training window)."""
        if self.validations:
            per = (self.spent["validation"] + self.spent["checkpoints"]) / self.validations
            return 1.2 * per
        return val_windows * self.step_s() / max(batch, 1) / 3 + 2.0

    def replan(self, global_step: int, val_windows: int, batch: int) -> None:
        """Move the schedule's horizon to the step at which the budget runs out."""
        left = self.seconds - self.elapsed() - self.reserve(val_windows, batch)
        self.horizon.steps = global_step + max(1, int(left / max(self.step_s(), 1e-6)))

    def out_of_time(self, val_windows: int, batch: int) -> bool:
        """True when one more step and the final validation + checkpoint would not fit."""
        if self.steps == 0:
            return False
        need = self.step_s() + self.reserve(val_windows, batch)
        self.time_up = self.time_up or self.elapsed() + need > self.seconds
        return self.time_up

    def check_enough(self, val_windows: int, batch: int) -> None:
        """After the first step: refuse a budget that cannot hold one step and one validation."""
        need = self.elapsed() + self.reserve(val_windows, batch)
        if need > self.seconds:
            raise ConfigError(
                f"train.time_budget_s={self.seconds:g} is too small: start-up and one step took"
                f" {self.elapsed():.0f} s and one validation + checkpoint needs about"
                f" {self.reserve(val_windows, batch):.0f} s; give at least {need * 1.5:.0f} s"
            )

    def validation_due(self) -> bool:
        """About VALIDATIONS evenly spaced validations before the final one."""
        return self.elapsed() - self.last_validation >= self.seconds / (VALIDATIONS + 1)

    def summary(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in {**self.spent, "total": self.elapsed()}.items()}
