"""bench/pix2pix.py --quick runs end to end and prints its side-by-side table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_pix2pix_quick(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "pix2pix.py"),
            "--quick",
            "--work",
            str(tmp_path),
            "--variant",
            "two=pix2pix.d_scales=2,pix2pix.mismatch_prob=0.5",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| model | iou | bf1_2px | bf1_3px | steps")
    assert any(line.startswith("| ratio pix2pix/unet |") for line in lines)
    assert any(line.startswith("| ratio two/unet |") for line in lines)
    result = json.loads(lines[-1])
    resolved = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())
    assert resolved["pix2pix"]["d_scales"] == 2 and resolved["pix2pix"]["mismatch_prob"] == 0.5
    for name in ("unet_mobilenetv2", "pix2pix", "two"):
        row = result["rows"][name]
        assert row["steps"] == 2
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["bf1_2px"] <= 1.0
        assert row["cpu_s"] > 0
        assert (tmp_path / f"{name}_val_mask.tif").exists()
