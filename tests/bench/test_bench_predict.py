"""bench/predict.py --quick runs end to end and reports every figure (values are not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_predict_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "predict.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("overhead", "memory", "merger", "runtime"):
        assert line in proc.stdout
    r = json.loads(out.read_text())
    assert r["overhead"]["windows"] > 1 and r["overhead"]["ratio"] > 0
    assert set(r["memory"]["peak_rss_mb"]) == {"256", "512", "1024"}
    assert r["memory"]["baseline_rss_mb"] > 0
    assert r["merger"]["toolbelt_rss_mb"] > 0 and r["merger"]["time_ratio"] > 0
    # torch at its default precision (bf16 on CPUs that have it) vs ONNX Runtime in fp32; the
    # fp32-to-fp32 comparison (>= 99.9 %) is tests/inference/test_export.py's.
    assert r["runtime"]["time_ratio"] > 0 and r["runtime"]["equal_pixels"] >= 0.99
