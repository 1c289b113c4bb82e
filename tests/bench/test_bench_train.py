"""bench/train.py --quick runs and prints its three side-by-side ratios."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from train_helpers import ROOT, env


@pytest.mark.slow
def test_bench_train_quick_prints_ratios() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ratios = {
        name: float(value) for name, value in re.findall(r"ratio (\S+)\s+(\d+\.\d+)", res.stdout)
    }
    assert set(ratios) == {"store/memory", "loader/synthetic", "fp32/bf16"}, res.stdout
    assert all(r > 0 for r in ratios.values())
