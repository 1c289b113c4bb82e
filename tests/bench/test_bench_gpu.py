"""bench/gpu.py: a smoke run on the CPU (so the script never rots) and the real run on CUDA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from train_helpers import ROOT, env


def run(*args: str) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), *args],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_bench_gpu_quick_on_the_cpu_prints_one_json_line() -> None:
    got = run("--quick", "--device", "cpu")
    train = got["train_windows_per_s"]
    assert isinstance(train, dict) and set(train) == {"fp32", "bf16", "fp16"}
    assert all(v > 0 for v in train.values())
    assert got["predict_equal_to_cpu"] == 1.0 and got["preflight_refuses_oversized_batch"] is None


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device tool)")
def test_bench_gpu_on_cuda() -> None:
    got = run()
    assert got["preflight_refuses_oversized_batch"] is True
    assert float(got["predict_equal_to_cpu"]) >= 0.999  # type: ignore[arg-type]
