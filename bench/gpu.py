"""The GPU check: one short script to run when a GPU machine is lent (the `device` tool).

Measured side by side in one run, on the same GPU:
- train windows/s at 512 px, UNet-MobileNetV2, batch 16 (channels_last): fp32, bf16 autocast,
  fp16 autocast + GradScaler, each without and with torch.compile;
- predict Mpx/s (forward + softmax) at batch 1, 32 and 128, fp16;
- the GPU preflight refusing a batch that cannot fit (seg.training.runtime.check_gpu);
- `seg predict` on CUDA against `seg predict` on the CPU: the share of equal mask pixels.
Prints one JSON line. `--quick --device cpu`: tiny sizes on the CPU, so the script never rots
(tests/bench/test_bench_gpu.py); the figures then mean nothing.

Usage: python bench/gpu.py [--quick] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402


def timed_steps(device: torch.device, precision: str, compiled: bool, size: int, batch: int,
                steps: int, *, warmup: int = 3) -> float:  # fmt: skip
    """Training windows/s of the shipped UNet at one precision, after `warmup` untimed steps
    (5 when compiled: compilation and autotuning happen there)."""
    from seg.models import build_model

    torch.manual_seed(0)
    net = build_model({"name": "unet_mobilenetv2", "in_channels": 3, "num_classes": 2})
    net = net.to(device).to(memory_format=torch.channels_last)
    model: Any = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 2, (batch, size, size), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup if not compiled else max(warmup, 5)):  # compilation, cudnn autotune
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict_mpx(device: torch.device, size: int, batch: int, repeats: int) -> float:
    from seg.models import build_model

    net = build_model({"name": "unet_mobilenetv2", "in_channels": 3, "num_classes": 2})
    net = net.eval().to(device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
        torch.softmax(net(x).float(), 1)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.softmax(net(x).float(), 1)
        sync(device)
    return batch * size * size * repeats / (time.perf_counter() - t0) / 1e6


def preflight_refuses(device: torch.device) -> bool | None:
    """Whether the preflight refuses a batch far beyond the GPU's memory (None on the CPU)."""
    from seg.errors import ResourceError
    from seg.training.runtime import check_gpu, estimate_gpu_bytes

    if device.type != "cuda":
        return None
    try:
        check_gpu(device, estimate_gpu_bytes(100_000, 3, 512, True), 1.0)
    except ResourceError:
        return True
    return False


def predict_agreement(device: str, size: int) -> float:
    """`seg predict` on `device` vs on the CPU, same checkpoint and scene: equal mask pixels."""
    import rasterio

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_checkpoint, synthetic_pair, write_geotiff

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = make_checkpoint(work / "best.pt", size=size)
        image, _ = synthetic_pair(3 * size, 2 * size + 7, 3, seed=0)
        scene = write_geotiff(work / "s.tif", image)
        masks = []
        for i, dev in enumerate((device, "cpu")):
            out = work / f"{i}_{dev}.tif"  # two files even for cpu vs cpu: both runs predict
            cmd = [sys.executable, "-m", "seg", "predict", str(scene), "-k", str(ckpt), "--out",
                   str(out), "--device", dev, "--precision", "fp32", "-q"]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=ROOT)
            with rasterio.open(out) as ds:
                masks.append(ds.read(1))
    return float((masks[0] == masks[1]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA GPU visible (use --device cpu --quick for a smoke run)")
    device = torch.device(args.device)
    # --quick: one warm-up and one timed step; fp16 on a CPU is emulated (~0.4 windows/s at
    # 64 px), so the three warm-ups and two steps of a full run took most of the smoke test.
    size, batch, steps, warmup = (64, 2, 1, 1) if args.quick else (512, 16, 20, 3)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(device)
                              if device.type == "cuda" else "cpu", "size": size}  # fmt: skip
    train: dict[str, float] = {}
    for precision in ("fp32", "bf16", "fp16"):
        for compiled in (False, True):
            if compiled and (args.quick or device.type != "cuda"):
                continue  # compiling takes minutes on a CPU; measured on the GPU only
            key = precision + ("+compile" if compiled else "")
            speed = timed_steps(device, precision, compiled, size, batch, steps, warmup=warmup)
            train[key] = round(speed, 2)
    result["train_windows_per_s"] = train
    result["train_ratio_vs_fp32"] = {k: round(v / train["fp32"], 2) for k, v in train.items()}
    batches = (1, 2) if args.quick else (1, 32, 128)
    result["predict_mpx_per_s"] = {
        str(b): round(predict_mpx(device, size, b, 2 if args.quick else 10), 2) for b in batches
    }
    result["preflight_refuses_oversized_batch"] = preflight_refuses(device)
    result["predict_equal_to_cpu"] = predict_agreement(args.device, size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
