"""Experiment configs: pydantic models (unknown keys are errors), YAML loading, `--set` overrides.

Every section subclasses `Section` (extra="forbid"), so a typo in a config file or an override
fails with the key's dotted path and the reason.
"""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from seg import fs as segfs
from seg.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


T = TypeVar("T", bound=BaseModel)


def _format_validation(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors()[:3]:
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}' (check the spelling against configs/)")
        else:
            parts.append(f"'{key}': {err['msg']}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return f"invalid config {source}: " + "; ".join(parts) + more


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so 3 -> int, [1,2] -> list)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not key=value (e.g. --set train.epochs=3)")
    key, _, raw = item.partition("=")
    if not key.strip():
        raise ConfigError(f"--set {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str) -> dict[str, Any]:
    try:
        text = segfs.read_bytes(path).decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(
            f"config {path} is a folder; give a YAML file (e.g. configs/tile.yaml)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections at the top level")
    return data


def load_config(model: type[T], path: str | None = None, overrides: list[str] | None = None) -> T:
    """Read YAML at `path` (optional), apply `--set` overrides, and validate into `model`."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, path or "(defaults + --set)")) from exc


def validate_dict(model: type[T], data: dict[str, Any], source: str) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from exc


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# --- seg train -------------------------------------------------------------------------------

from typing import Annotated, Literal  # noqa: E402

from pydantic import Field, field_validator  # noqa: E402

from seg.gan_config import Pix2PixSection  # noqa: E402
from seg.metadata_config import MetadataField, check_unique  # noqa: E402
from seg.notify import NotifySection  # noqa: E402


class DataSection(Section):
    """Which windows feed the loop and how they are batched."""

    batch_size: Annotated[int, Field(ge=1)] = 8
    val_batch_size: Annotated[int | None, Field(ge=1)] = None
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 0  # "auto": see workers()
    train_split: str = "train"
    val_split: str = "val"
    # Class names the experiment expects; when given they must equal the store's classes.
    classes: list[str] | None = None
    # Subsample (a fixed, seeded choice) to fit a time budget; None = all windows.
    max_train_windows: Annotated[int | None, Field(ge=1)] = None
    max_val_windows: Annotated[int | None, Field(ge=1)] = None
    # Band statistics: "global" = the train split's, for every scene; "scene" = each scene's own
    # (training and `seg predict` alike): it evens out colour shifts (date, sensor, processing);
    # "percentile" = each scene's own 2nd..98th percentiles stretched to -2..2 and clipped there.
    normalise: Literal["global", "scene", "percentile"] = "global"
    # "rare_classes": draw a class (rare ones more often, temperature T), then a window with it;
    # null_share of the draws go to windows without foreground. "hard_windows": hard_share of
    # the draws in proportion to each window's recent training loss (seg.data.sampling).
    sampling: Literal["uniform", "rare_classes", "hard_windows"] = "uniform"
    sampling_temperature: Annotated[float, Field(gt=0.0)] = 0.1
    null_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    hard_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5

    def workers(self) -> int:  # seg train resolves "auto" (seg.training.runtime.resolve_workers)
        if self.num_workers == "auto":
            raise ValueError("data.num_workers auto must be resolved (resolve_workers) first")
        return self.num_workers


class ModelSection(Section):
    """The network; in_channels and num_classes come from the store, not from here."""

    # A name of the model registry (seg.models.MODELS), checked when the run starts.
    name: str = "unet_mobilenetv2"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    batchnorm: bool = True
    # Widths of the 5 decoder blocks, deepest first (smp's own: [256, 128, 64, 32, 16]).
    decoder_channels: Annotated[
        list[Annotated[int, Field(ge=1)]], Field(min_length=5, max_length=5)
    ] = [256, 128, 64, 32, 16]
    # Run the network at this fraction of the windows' resolution (imagery averaged down, logits
    # interpolated back: loss and masks stay on the native grid); a step costs ~scale^2.
    # "auto": 0.5 on imagery of 1 m or finer (or unknown GSD), 1.0 on coarser
    # (seg.training.resolution); resolved when the run starts and saved as a number.
    scale: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] = 1.0
    # A local or gs:// file with MobileNetV2 encoder weights (state dict); None = random init.
    encoder_weights: str | None = None
    # A seg checkpoint to start from (weights only: a fresh optimizer, schedule and counters);
    # its classification head starts afresh when its classes are not this store's.
    init_from: str | None = None
    # Scene metadata the network is conditioned on (seg.metadata_config): e.g. [day_of_year,
    # lat, lon, gsd, sun_elevation, {name: sensor}]; [] = none.
    metadata: list[MetadataField] = []
    # "deep": one vector added to the deepest encoder features (measured: at least as good as
    # "film" on every set of bench/metadata.py, and cheaper); "film": scale + shift per channel
    # after every decoder block.
    metadata_mechanism: Literal["film", "deep"] = "deep"
    metadata_hidden: Annotated[int, Field(ge=4)] = 64
    # Each field of each window is hidden with this probability while training, so that scenes
    # lacking it still predict well.
    metadata_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    @field_validator("metadata")
    @classmethod
    def _unique(cls, fields: list[MetadataField]) -> list[MetadataField]:
        return check_unique(fields)


class LossSection(Section):
    # ce_lovasz: CE + Lovász-softmax (Berman et al.), equal weights; lovasz alone;
    # focal_dice: focal + dice_weight * Dice
    name: Literal["ce", "dice", "ce_dice", "focal", "focal_dice", "lovasz", "ce_lovasz"] = "ce_dice"
    # One weight per class, or "auto": from the training labels' frequencies (^-1/2; see
    # seg.training.class_balance). None = every class weighs 1.
    class_weights: list[float] | Literal["auto"] | None = None
    dice_weight: Annotated[float, Field(ge=0.0)] = 1.0
    focal_gamma: Annotated[float, Field(ge=0.0)] = 2.0


class OptimSection(Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    momentum: Annotated[float, Field(ge=0.0)] = 0.9
    # Clip the global gradient norm to this value; None = no clipping (the norm is still logged).
    grad_clip: Annotated[float | None, Field(gt=0.0)] = 1.0


class ScheduleSection(Section):
    name: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class TrainSection(Section):
    # None = as many as train.time_budget_s allows (10 without a budget).
    epochs: Annotated[int | None, Field(ge=1)] = None
    # Steps in one epoch; None = one pass over the train windows.
    steps_per_epoch: Annotated[int | None, Field(ge=1)] = None
    # Stop after this many optimizer steps in total (across resumes); None = epochs decide.
    max_steps: Annotated[int | None, Field(ge=1)] = None
    # Wall-clock budget in seconds for this invocation: the run plans itself to it (LR schedule
    # ending at the budget, a stop at a step, a few validations; see seg.training.budget).
    time_budget_s: Annotated[float | None, Field(gt=0.0)] = None
    seed: int = 0
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    log_every_steps: Annotated[int, Field(ge=1)] = 10
    # Fixed validation windows drawn as image | truth | prediction in TensorBoard each epoch.
    preview_windows: Annotated[int, Field(ge=0)] = 4
    # Refuse to start when the chosen GPU already has more than this fraction of memory in use.
    max_gpu_busy_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # Validate + checkpoint an average of the weights (seg.training.ema); None = as trained.
    ema_decay: Annotated[float | None, Field(gt=0.0, lt=1.0)] = None


class CheckpointSection(Section):
    every_steps: Annotated[int | None, Field(ge=1)] = None
    every_epochs: Annotated[int | None, Field(ge=1)] = 1
    # Keep this many periodic snapshots (step_*/epoch_*); last.pt and best.pt are always kept.
    keep: Annotated[int, Field(ge=1)] = 3


class AugmentSection(Section):
    """Probabilities (0 disables) and ranges of the albumentations pipeline (seg.data.augment)."""

    hflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    vflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    rot90: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    brightness_contrast: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    brightness_limit: Annotated[float, Field(ge=0.0)] = 0.2
    contrast_limit: Annotated[float, Field(ge=0.0)] = 0.2
    noise: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    noise_std: Annotated[float, Field(ge=0.0)] = 0.05
    band_jitter: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # gain + offset per band
    band_jitter_limit: Annotated[float, Field(ge=0.0)] = 0.1
    # A smooth additive field; "auto": strength by band count (seg.training.band_count).
    illumination: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = 0.0
    illumination_std: Annotated[float, Field(ge=0.0)] | Literal["auto"] = 0.5
    illumination_grid: Annotated[int, Field(ge=2)] = 3
    scale_crop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    scale_min: Annotated[float, Field(gt=0.0, le=1.0)] = 0.75
    scale_max: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    # Random crop x crop pieces of the windows (a multiple of 32): ~(crop / window)^2 the cost.
    crop: Annotated[int | None, Field(ge=32)] = None
    # Share of windows given a square of another window of the batch (seg.training.cut_mix);
    # "auto": by band count, resolved by seg train.
    cut_mix: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = 0.0
    # Share of batches shrunk as a whole by a factor in [zoom_out_min, 1) (seg.training.zoom_out).
    zoom_out: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    zoom_out_min: Annotated[float, Field(ge=0.125, le=1.0)] = 0.5


class EarlyStoppingSection(Section):
    enabled: bool = False
    # "miou", "mf1", "accuracy", "loss", or a per-class metric like "iou/building".
    metric: str = "miou"
    mode: Literal["max", "min"] = "max"
    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainConfig(Section):
    """The whole `seg train` experiment (configs/unet_mobilenetv2.yaml)."""

    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    train: TrainSection = Field(default_factory=TrainSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    pix2pix: Pix2PixSection = Field(default_factory=Pix2PixSection)
    notify: NotifySection | None = None  # webhook / e-mail when the run ends (seg.notify)
