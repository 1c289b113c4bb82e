"""The README's first command: `seg quickstart` runs the whole main job and is safe to re-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio


@pytest.mark.slow
def test_quickstart_end_to_end_and_rerun(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "seg", "quickstart", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "building IoU" in first.stdout

    mask = out / "predictions" / "sample_3_mask.tif"
    scene = out / "scenes" / "sample_3_image.tif"
    with rasterio.open(mask) as m, rasterio.open(scene) as s:
        assert (m.width, m.height, m.crs, m.transform) == (s.width, s.height, s.crs, s.transform)
        ids = m.read(1)
        valid = s.dataset_mask() > 0
    assert set(np.unique(ids[valid])) <= {0, 1}
    assert (ids[~valid] == 255).all()  # nodata corner stays nodata

    report = json.loads((out / "eval" / "report.json").read_text())
    # The test scene was never seen in training; chance level for building IoU is ~0.1.
    assert report["per_class"]["building"]["iou"] > 0.7
    assert (out / "eval" / "overlay.png").stat().st_size > 1000

    steps = [json.loads(line)["step"] for line in (out / "run" / "metrics.jsonl").open()]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    again = [json.loads(line)["step"] for line in (out / "run" / "metrics.jsonl").open()]
    assert again == steps  # the finished run was not trained again


def test_quickstart_trains_the_shipped_recipes_network() -> None:
    """The quickstart cannot read configs/ (not in the wheel), so it repeats the recipe's
    network settings; they must stay the shipped config's."""
    from seg.config import TrainConfig, load_config
    from seg.quickstart import TRAIN_OVERRIDES

    shipped = load_config(
        TrainConfig, str(Path(__file__).parents[1] / "configs" / "unet_mobilenetv2.yaml")
    )
    demo = load_config(TrainConfig, None, TRAIN_OVERRIDES)
    assert demo.model == shipped.model
