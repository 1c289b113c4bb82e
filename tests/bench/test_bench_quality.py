"""bench/quality.py --quick runs the hand-written loop and seg's CLI side by side and prints,
per set, both mIoUs, the seam figures, steps and windows, and seg minus loop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ROOT, env


@pytest.mark.slow
def test_bench_quality_quick(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "quality.py"),
            "--quick",
            "--sets",
            "a",
            "--work",
            str(tmp_path),
            "--json",
            str(out),
            "--loop-precision",  # the loop as it runs where bf16 is emulated (seg's auto: fp32)
            "fp32",
        ],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert re.search(r"^loop\s+mIoU \d\.\d{4} .*steps \d+", res.stdout, re.M), res.stdout
    assert re.search(r"^seg\s+mIoU \d\.\d{4} .*steps \d+", res.stdout, re.M), res.stdout
    assert re.search(r"^seg - loop: mIoU [+-]\d\.\d{4}", res.stdout, re.M), res.stdout
    assert json.loads(out.read_text())["loop_precision"] == "fp32"
    data = json.loads(out.read_text())["a"]
    for who in ("loop", "seg"):
        assert 0.0 <= data[who]["miou"] <= 1.0 and data[who]["steps"] > 0
        assert data[who]["windows_seen"] > 0
    # seg's training time is accounted for part by part (seg.training.budget).
    assert set(data["seg"]["budget_spent"]) >= {"train", "data", "validation", "checkpoints"}


def test_an_unknown_set_is_refused_naming_the_sets(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--sets", "kampala,paris"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 2
    assert "unknown set(s) paris; choose from kampala, vegas, atlanta" in res.stderr
