"""What a prediction run is asked to do (`PredictOptions`) and what it did (`PredictSummary`):
the values `seg predict`, `seg predict --store` and `seg stitch` share."""

from __future__ import annotations

from dataclasses import dataclass, field

from seg.checkpoint import CheckpointInfo
from seg.errors import ConfigError
from seg.shards import Shard

COARSE_PASS_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class PredictOptions:
    overlap: int | None = None  # pixels shared by neighbouring windows; None = size // 4
    # The window the network runs on, in scene pixels: a multiple of the training window.
    # None = the training window (predict_window).
    window: int | None = None
    batch_size: int = 4
    # Test-time augmentation (flips + a quarter turn, averaged): +0.018 mIoU on average over 4
    # checkpoints x 2 sets for ~1.6x the predict time (docs/recipe.md row 34).
    tta: bool = True
    # Blend in a pass at half the network's resolution (seg.inference.coarse_pass): "auto" where
    # that pass's pixels stay 2 m or finer, "on", "off". Scenes only, not a store's windows.
    coarse_pass: str = "auto"
    # Reweight probabilities to each scene's class shares, estimated by a first pass
    # (seg.inference.priors); needs a checkpoint that records its training class shares.
    adapt_priors: bool = True
    # Normalise every scene with the training scenes' merged statistics (the checkpoint's) where
    # a `data.normalise: scene` model would take the scene's own: for scenes from the training
    # imagery whose class shares differ (a scene's mean moves with what it holds; docs/recipe.md
    # rows 77 and 82).
    training_stats: bool = False
    probabilities: str | None = None  # None, "uint8" or "float16": also write <mask>_probs.tif
    vector: str | None = None  # None, a .geojson/.gpkg path, or "geojson"/"gpkg" per scene
    bands: tuple[int, ...] | None = None  # 1-based scene bands; None = as trained
    device: str = "auto"
    precision: str = "auto"
    pixel_space: bool = False
    overwrite: bool = False
    runtime: str = "auto"  # auto (by the model file), torch, or onnx (an ONNX export)
    shard: Shard = field(default_factory=Shard)

    def __post_init__(self) -> None:
        if self.coarse_pass not in COARSE_PASS_MODES:
            raise ConfigError(
                f"unknown --coarse-pass {self.coarse_pass!r}; choose one of"
                f" {list(COARSE_PASS_MODES)}"
            )


@dataclass
class PredictSummary:
    scenes: int = 0
    predicted: int = 0
    skipped: int = 0  # outputs existed and --overwrite was not given
    windows: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenes} scenes ({self.predicted} predicted, {self.skipped} skipped: output"
            f" exists), {self.windows} windows, {self.seconds:.1f} s"
        )


def parse_bands(bands: str | None) -> tuple[int, ...] | None:
    """ "4,3,2" -> (4, 3, 2); None stays None."""
    if bands is None:
        return None
    try:
        return tuple(int(b) for b in str(bands).split(",") if b.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--bands {bands!r} is not a comma-separated list of 1-based band numbers"
        ) from exc


def predict_window(info: CheckpointInfo, window: int | None, fixed: bool = False) -> int:
    """The window `seg predict` runs the network on: `window`, else the training window.
    fixed: the runtime takes the training window only (an ONNX export's input shape)."""
    if window is None:
        return info.size
    if window <= 0 or window % info.size:
        raise ConfigError(
            f"--window-size {window} is not a multiple of the training window ({info.size});"
            f" use e.g. {2 * info.size}"
        )
    if fixed and window != info.size:
        raise ConfigError(
            f"an ONNX export runs on its training window ({info.size} px): drop --window-size,"
            " or predict with the checkpoint"
        )
    return window


def scene_window(window: int, train: int, height: int, width: int) -> int:
    """`window` for a scene at least that large; for a smaller one, the smallest multiple of the
    training window that covers it: one window either way, with less padding to compute."""
    return min(window, train * -(-max(height, width) // train))
