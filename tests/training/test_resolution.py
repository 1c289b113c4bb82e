"""`model.scale: auto`: half resolution on sub-metre imagery, full resolution on coarser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import train_one_step
from rasterio.transform import from_origin

from seg.checkpoint import load_checkpoint
from seg.data.scene_metadata import SceneFacts
from seg.training.resolution import auto_scale, training_gsd

Run = Callable[..., tuple[int, str, str]]


@pytest.mark.parametrize(
    ("gsd", "scale"),
    [(0.075, 0.5), (0.5, 0.5), (1.0, 0.5), (1.02, 0.5), (1.2, 1.0), (5.0, 1.0), (None, 0.5)],
)
def test_auto_scale_halves_imagery_of_a_metre_or_finer(gsd: float | None, scale: float) -> None:
    assert auto_scale(gsd) == scale


def facts(crs: str | None, pixel: float, sidecar: dict[str, object] | None = None) -> SceneFacts:
    transform = (pixel, 0.0, 500000.0, 0.0, -pixel, 4000000.0)
    return SceneFacts("s.tif", {}, sidecar or {}, crs, transform, 100, 100)


def test_training_gsd_is_the_median_of_the_scenes_that_state_one() -> None:
    scenes = [facts("EPSG:32633", 5.0), facts("EPSG:32633", 0.5), facts("EPSG:32633", 4.0)]
    assert training_gsd(scenes) == pytest.approx(4.0, rel=1e-3)  # on the ground, in metres
    assert training_gsd([facts(None, 1.0)]) is None  # pixel space
    assert training_gsd([facts(None, 1.0), facts("EPSG:32633", 0.3)]) == pytest.approx(0.3, 1e-3)
    assert training_gsd([facts(None, 1.0, {"gsd": 2.0})]) == 2.0  # a sidecar says it


@pytest.mark.slow
@pytest.mark.parametrize(("pixel", "scale"), [(5.0, 1.0), (0.25, 0.5)])
def test_train_resolves_auto_and_keeps_the_number(
    tmp_path: Path, seg_run: Run, pixel: float, scale: float
) -> None:
    transform = from_origin(500000.0, 4000000.0, pixel, pixel)
    run = train_one_step(seg_run, tmp_path, transform=transform, sets=("model.scale=auto",))
    assert json.loads((run / "run.json").read_text())["model_scale"] == scale
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["scale"] == scale
    assert load_checkpoint(str(run / "last.pt"))["model"]["scale"] == scale  # predict rebuilds it
