"""`augment.illumination: auto`: a strong brightness field on imagery of several bands, a mild
one on a single band (docs/recipe.md rows 57, 85-93)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import train_one_step

from seg.config import TrainConfig, load_config
from seg.data.augment import IlluminationField, build_augment
from seg.training.band_count import auto_augment, resolve_augment

Run = Callable[..., tuple[int, str, str]]
# (illumination, illumination_std) as measured: docs/recipe.md rows 57, 85-93
MULTI_BAND = (0.8, 0.7)
ONE_BAND = (0.5, 0.3)


@pytest.mark.parametrize(("bands", "field"), [(1, ONE_BAND), (2, MULTI_BAND), (3, MULTI_BAND)])
def test_auto_field_is_strong_on_several_bands_and_mild_on_one(
    bands: int, field: tuple[float, float]
) -> None:
    auto = auto_augment(bands)
    assert (auto["illumination"], auto["illumination_std"]) == field
    cfg = load_config(TrainConfig, "configs/unet_mobilenetv2.yaml")
    assert (cfg.augment.illumination, cfg.augment.illumination_std) == ("auto", "auto")
    resolved = resolve_augment(cfg, bands).augment
    assert (resolved.illumination, resolved.illumination_std) == field
    pipeline = build_augment(resolved, 64)
    assert pipeline is not None
    built = [t for t in pipeline.transforms if isinstance(t, IlluminationField)]
    assert [(t.p, t.std) for t in built] == [field]  # what the windows get


def test_a_given_strength_is_kept_and_auto_is_never_built_unresolved() -> None:
    cfg = load_config(
        TrainConfig,
        "configs/unet_mobilenetv2.yaml",
        ["augment.illumination=0.2", "augment.illumination_std=auto"],
    )
    aug = resolve_augment(cfg, 3).augment
    assert (aug.illumination, aug.illumination_std) == (0.2, MULTI_BAND[1])
    with pytest.raises(ValueError, match="resolve"):
        build_augment(cfg.augment, 64)


@pytest.mark.slow
@pytest.mark.parametrize(("bands", "field", "mixed"), [(3, MULTI_BAND, 0.5), (1, ONE_BAND, 0.0)])
def test_train_resolves_the_field_and_saves_the_numbers(
    tmp_path: Path, seg_run: Run, bands: int, field: tuple[float, float], mixed: float
) -> None:
    run = train_one_step(seg_run, tmp_path, bands=bands)
    saved = yaml.safe_load((run / "config.yaml").read_text())["augment"]
    assert (saved["illumination"], saved["illumination_std"]) == field
    assert saved["cut_mix"] == mixed  # augment.cut_mix: auto, by band count too
