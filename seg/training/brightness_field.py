"""`augment.illumination: auto`: the brightness field's strength chosen from the band count.

The field (`seg.data.augment.IlluminationField`) adds one smooth surface to every band of a
window, so "brighter than the scene's mean" stops being a class while the differences between
bands survive. On imagery of several bands that is what generalises: strong (80 % of windows,
knots of N(0, 0.7) band stds) it scored above the mild field on every RGB set (docs/recipe.md:
kampala +0.07 and +0.021, rows 51 against 57-58 and 91 against 85; kampala_blocks +0.098, rows
88 against 87, and +0.017 over three runs each, row 93; naip +0.069, rows 90 against 89). On a
single band the shared field is all there is to the colour, and brightness is most of what
tells a road or a roof apart: there the strong field lost (vegas -0.013 to -0.06, atlanta
-0.021, rows 46, 51, 55) and the mild one (half the windows, std 0.3) won (row 57).
"""

from __future__ import annotations

from seg.config import TrainConfig

# (share of windows, std of the lattice's knots in band stds), by whether there are >= 2 bands.
MULTI_BAND = (0.8, 0.7)
ONE_BAND = (0.5, 0.3)


def auto_field(bands: int) -> tuple[float, float]:
    """(augment.illumination, augment.illumination_std) for imagery of `bands` bands."""
    return MULTI_BAND if bands >= 2 else ONE_BAND


def resolve_field(cfg: TrainConfig, bands: int) -> TrainConfig:
    """The config with `augment.illumination` / `illumination_std: auto` replaced by their
    numbers for `bands` input bands; given numbers are kept."""
    aug = cfg.augment
    share, std = auto_field(bands)
    update: dict[str, float] = {}
    if aug.illumination == "auto":
        update["illumination"] = share
    if aug.illumination_std == "auto":
        update["illumination_std"] = std
    if not update:
        return cfg
    return cfg.model_copy(update={"augment": aug.model_copy(update=update)})
