"""`auto` augmentation settings, resolved from the imagery's band count by `seg train`.

Two augmentations of the shipped config help on imagery of several bands and cost on a single
band, so `auto` means one number or the other (docs/recipe.md):

- the brightness field (`seg.data.augment.IlluminationField`: one smooth surface added to every
  band of a window, so "brighter than the scene's mean" stops being a class while the
  differences between bands survive). Strong (80 % of windows, knots of N(0, 0.7) band stds) it
  scored above the mild field on every RGB set: kampala +0.07 and +0.021 (rows 51 against 57-58,
  91 against 85), kampala_blocks +0.098 (88 against 87; +0.017 over three runs each, row 93),
  naip +0.069 (90 against 89). On a single band the shared field is all there is to the colour
  and brightness is most of what tells a road or a roof apart: there the strong field lost
  (vegas -0.013 to -0.06, atlanta -0.021, rows 46, 51, 55) and the mild one (half the windows,
  std 0.3) won (row 57);
- cut-mix (`seg.training.cut_mix`): half the windows mixed on RGB, kampala_blocks +0.060 and naip
  +0.040 over two runs each, kampala level (rows 95, 97, 99); on the 1-band vegas roads -0.036
  over three runs each (rows 97-98, 102: level in the same hour, below the runs of the day
  before), where a road is told from an unlabelled one by its course across the window, which
  the pasted square cuts.

The resolved numbers replace `auto` in the run's config.yaml and checkpoint, so a run says what
it trained with.
"""

from __future__ import annotations

from seg.config import TrainConfig

# augment field -> (its number on one band, on two or more bands)
AUTO_BY_BANDS: dict[str, tuple[float, float]] = {
    "illumination": (0.5, 0.8),  # share of windows given a brightness field
    "illumination_std": (0.3, 0.7),  # std of the field's knots, in band stds
    "cut_mix": (0.0, 0.5),  # share of windows given a square of another window
}


def auto_augment(bands: int) -> dict[str, float]:
    """What each `auto` augmentation setting means for imagery of `bands` bands."""
    return {name: pair[bands >= 2] for name, pair in AUTO_BY_BANDS.items()}


def resolve_augment(cfg: TrainConfig, bands: int) -> TrainConfig:
    """The config with every `auto` of AUTO_BY_BANDS replaced by its number for `bands` input
    bands; numbers given in the config are kept."""
    aug = cfg.augment
    update = {k: v for k, v in auto_augment(bands).items() if getattr(aug, k) == "auto"}
    if not update:
        return cfg
    return cfg.model_copy(update={"augment": aug.model_copy(update=update)})
