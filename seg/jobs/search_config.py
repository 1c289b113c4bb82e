"""A sweep of JOBS.yaml (`SweepEntry`): a grid, or a `search: optuna` with its space and its
pruning rules; checked when the file is read.

    sweeps:
      - name: lr
        config: configs/pix2pix.yaml
        data: "{runs}/ds.zarr"
        set: [train.epochs=8]
        search: optuna                      # instead of grid: (the default search)
        trials: 12                          # trials in all, over restarts of the same submit
        budget_s: 7200                      # optional: no new trial starts after this
        sampler: tpe                        # tpe | random
        metric: miou                        # maximised (a loss is minimised)
        space:
          optim.lr: {low: 0.00001, high: 0.01, log: true}
          pix2pix.lambda_adv: {low: 0.01, high: 1.0}
          data.batch_size: [4, 8]           # a list: one of these values
        prune:
          median: {startup_trials: 3, warmup_epochs: 1}   # Optuna's MedianPruner
          loss_ratio: {numerator: train_d_loss, denominator: train_g_adv, low: 0.05, high: 20,
                       epochs: 2}          # the ratio out of [low, high] for 2 epochs in a row
          collapse: 2                       # D won outright / one class predicted, 2 epochs
          divergence: {factor: 3.0, epochs: 2}  # train loss over 3x its best, 2 epochs

Every key is checked when the file is read: an unknown metric, an empty or reversed range, a
log range that reaches 0 is one line naming the key.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from seg import fs as segfs
from seg.config import Section, TrainConfig, load_config
from seg.errors import ConfigError

# Validation metrics a trial is ranked and median-pruned by (seg.training.validation's names).
GLOBAL_METRICS = ("miou", "mf1", "accuracy", "loss")
PER_CLASS = ("iou", "f1", "precision", "recall")
# What every epoch line of metrics.jsonl holds for the ratio rule: the validation loss and the
# epoch means of the step's figures (`train_<name>`; pix2pix adds the D and G terms).
EPOCH_STATS = (
    "train_loss", "val_loss", "train_grad_norm", "train_seg_loss", "train_g_adv",
    "train_lambda_adv", "train_d_loss", "train_d_acc", "train_d_excess", "train_grad_norm_d",
    "train_collapsed", "train_pred_top_class", "train_g_fm",
)  # fmt: skip
Positive = Annotated[int, Field(ge=1)]
Retries = Annotated[int, Field(ge=0, le=10)]


class Range(Section):
    """A number drawn from [low, high]: on a log scale with `log`, whole numbers with `int`."""

    low: float
    high: float
    log: bool = False
    int: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self


class MedianRule(Section):
    startup_trials: Annotated[int, Field(ge=0)] = 3  # trials that finish before any is pruned
    warmup_epochs: Annotated[int, Field(ge=0)] = 1  # epochs a trial runs before it can be


class RatioRule(Section):
    numerator: str
    denominator: str
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    epochs: Positive = 2

    @model_validator(mode="after")
    def _known(self) -> RatioRule:
        for name in (self.numerator, self.denominator):
            if name not in EPOCH_STATS:
                raise ValueError(f"unknown figure '{name}'; choose from {', '.join(EPOCH_STATS)}")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class DivergenceRule(Section):
    factor: float = Field(default=3.0, gt=1.0)  # train loss above factor x its lowest so far
    epochs: Positive = 2


class PruneSection(Section):
    median: MedianRule | None = None
    loss_ratio: RatioRule | None = None
    collapse: Positive | None = None  # epochs in a row with D collapsed or one class predicted
    divergence: DivergenceRule | None = None


class SearchSection(Section):
    """The keys `search: optuna` adds to a sweep (seg.jobs.jobs_file.SweepEntry)."""

    trials: Positive | None = None
    budget_s: float | None = Field(default=None, gt=0)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    metric: str = "miou"
    space: dict[str, Range | list[Any]] | None = None
    prune: PruneSection | None = None


class SweepEntry(SearchSection):
    name: str
    config: str
    data: str
    set: list[str] = Field(default_factory=list)
    search: Literal["grid", "optuna"] = "grid"
    grid: dict[str, list[Any]] | None = None  # search: grid
    args: list[str] = Field(default_factory=list)  # more `seg train` options, e.g. [--gpus, "0"]
    gpu: bool = True
    after: list[str] = Field(default_factory=list)
    retries: Retries = 1


def check_sweep(sweep: SweepEntry) -> None:
    """The keys that go together: a grid, or a search with its space; the first run's config."""
    where = f"sweep '{sweep.name}'"
    searched = {k for k in ("trials", "space", "prune", "budget_s") if getattr(sweep, k)}
    if sweep.search == "grid":
        if searched:
            raise ConfigError(
                f"{where}: {', '.join(sorted(searched))} need(s) search: optuna (a grid runs"
                " every point to the end)"
            )
        if sweep.grid is None:
            raise ConfigError(f"{where}: give a 'grid' (or search: optuna with a 'space')")
        points = {k: v[0] for k, v in sweep.grid.items() if isinstance(v, list) and v}
    else:
        if sweep.grid is not None:
            raise ConfigError(f"{where}: search: optuna draws from 'space'; remove 'grid'")
        check_search(sweep, where)
        points = first_point(sweep.space or {})
    check_trial_config(sweep.config, sweep.set, points, where)


def check_metric(name: str, where: str) -> None:
    """`miou`, `mf1`, `accuracy`, `loss` or `<iou|f1|precision|recall>/<class>`."""
    head, _, cls = name.partition("/")
    if name in GLOBAL_METRICS or (head in PER_CLASS and cls):
        return
    raise ConfigError(
        f"{where}: unknown metric '{name}'; choose from {', '.join(GLOBAL_METRICS)} or"
        f" <{'|'.join(PER_CLASS)}>/<class>"
    )


def check_search(search: SearchSection, where: str) -> None:
    """What pydantic cannot say alone: a search needs trials and a non-empty space."""
    if search.trials is None:
        raise ConfigError(f"{where}: search: optuna needs 'trials' (e.g. trials: 12)")
    if not search.space:
        raise ConfigError(
            f"{where}: search: optuna needs a 'space' (e.g. space: {{optim.lr: {{low: 0.0001,"
            " high: 0.01, log: true}})"
        )
    for key, values in search.space.items():
        if isinstance(values, list) and not values:
            raise ConfigError(f"{where}: space key '{key}' has an empty list of values")
        if isinstance(values, list) and not all(
            v is None or isinstance(v, bool | int | float | str) for v in values
        ):
            raise ConfigError(
                f"{where}: space key '{key}': choices must be numbers, text, true/false or null"
            )
    check_metric(search.metric, f"{where}: metric")


def maximise(metric: str) -> bool:
    return metric != "loss"


def check_trial_config(config: str, sets: list[str], points: dict[str, Any], where: str) -> None:
    """Validate the sweep's config as its first run will see it (`points`: key -> a value
    each), so a typo in a key or value is one line now, not a failure in every trial. A config
    that does not exist yet (written by an upstream job) or lies on gs:// is left to the runs."""
    if segfs.is_remote(config) or not segfs.exists(config):
        return
    values = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in points.items()]
    try:
        load_config(TrainConfig, config, [*sets, *values])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def first_point(space: dict[str, Range | list[Any]]) -> dict[str, Any]:
    """A value per key of a search space: the first choice, or the low end of a range."""
    return {
        k: v[0] if isinstance(v, list) else (int(v.low) if v.int else v.low)
        for k, v in space.items()
    }
