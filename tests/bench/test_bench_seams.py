"""bench/seams.py --quick: a checkpoint's windowed mask against one forward pass over the whole
scene, both scored on the band along the window borders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_helpers import ROOT, env


@pytest.mark.slow
def test_bench_seams_quick(tmp_path: Path) -> None:
    out = tmp_path / "seams.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "seams.py"), "--quick", "--work", str(tmp_path),
         "--json", str(out)],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = r"windowed mIoU \d\.\d{4}, border - interior [+-]\d\.\d{4}; whole scene in one pass"
    assert re.search(line + r" mIoU \d\.\d{4}, .* what the seams cost: [+-]\d\.\d{4}", res.stdout)
    result = json.loads(out.read_text())
    assert result["grid"] == [64, 16] and result["border_px"] == 4
    for name in ("windowed", "whole"):
        r = result[name]
        assert r["gap"] == pytest.approx(r["border"] - r["interior"])
    assert result["seam_cost"] == pytest.approx(result["windowed"]["gap"] - result["whole"]["gap"])
    # The whole-scene pass is `seg predict` with one window over all of the scene: on a
    # learnable scene the two masks agree almost everywhere and both find the squares.
    import rasterio

    with (
        rasterio.open(tmp_path / "windowed.tif") as a,
        rasterio.open(tmp_path / "whole.tif") as b,
        rasterio.open(tmp_path / "s1.tif") as scene,
    ):
        assert b.shape == scene.shape and b.transform == scene.transform and b.crs == scene.crs
        assert json.loads(b.tags()["SEG_WINDOW"])["size"] >= max(scene.shape)  # one window
        windowed, whole = a.read(1), b.read(1)
    assert (windowed == whole).mean() > 0.95
    assert result["whole"]["miou"] > 0.6 and 0 < whole.mean() < 1
    assert np.isin(np.unique(whole), [0, 1]).all()
