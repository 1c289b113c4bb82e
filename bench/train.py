"""Benchmark `seg train`'s data path and step, side by side in one run.

- loader: windows/s of one loader process reading a zarr window store through the real
  Dataset (normalise + augmentation), against the same Dataset fed from an in-memory numpy
  array (ratio = store / memory; goal >= 0.9);
- step: training-step time fed by the real DataLoader (1 worker, prefetching) against the same
  steps on synthetic tensors already in memory (ratio = loader / synthetic; goal <= 1.05: the
  loader never starves the model);
- precision: fp32 against bf16 autocast + channels_last on the CPU, each timed in its own
  process (mixing them in one process gave 1-10 s swings); ratio = fp32 / bf16.

Usage: python bench/train.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Run as a script, bench/ is sys.path[0]: bench/queue.py would shadow the stdlib `queue`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class InMemoryDataset:
    """The real WindowDataset with its windows read from numpy arrays instead of the store."""

    def __new__(cls, ds):  # type: ignore[no-untyped-def]
        from seg.data.dataset import WindowDataset

        images = np.stack([ds.read(i)[0] for i in range(len(ds))])  # (N, C, S, S)
        masks = np.stack([ds.read(i)[1] for i in range(len(ds))])  # (N, S, S)

        class Memory(WindowDataset):
            def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
                return images[i], masks[i]

        mem = Memory.__new__(Memory)
        mem.__dict__.update(ds.__getstate__())
        return mem


def make_store(folder: Path, size: int, windows: int) -> Path:
    from conftest import write_window_store

    return write_window_store(folder / "ds.zarr", {"a": "train", "b": "val"}, size, windows)


def datasets(store: Path):  # type: ignore[no-untyped-def]
    from seg.config import AugmentSection
    from seg.data.dataset import WindowDataset
    from seg.data.store import WindowStore
    from seg.data.window_prep import Normalisation

    st = WindowStore.open(str(store))
    norm = Normalisation.from_store(st, ["a"])
    aug = AugmentSection(brightness_contrast=0.3, noise=0.2)
    real = WindowDataset(str(store), ["a"], norm, augment=aug)
    return real, InMemoryDataset(real)


def one_pass(ds, p: int) -> float:  # type: ignore[no-untyped-def]
    """Windows/s of one process iterating the dataset once (augmentation seeds of pass p)."""
    t = time.perf_counter()
    for i in range(len(ds)):
        ds[(i, p * 1000 + i)]
    return len(ds) / (time.perf_counter() - t)


def loader_rates(real, memory, passes: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Median windows/s of store and memory, and the median of per-pass ratios store/memory.

    Passes alternate store, memory, store, ... so each ratio compares two passes taken back to
    back: on a shared machine the load changes between a block of store passes and a block of
    memory passes, which moved the ratio by +-0.2.
    """
    store, mem, ratios = [], [], []
    for p in range(passes):
        store.append(one_pass(real, p))
        mem.append(one_pass(memory, p))
        ratios.append(store[-1] / mem[-1])
    return statistics.median(store), statistics.median(mem), statistics.median(ratios)


def build_step(precision: str, size: int):  # type: ignore[no-untyped-def]
    from seg.config import TrainConfig
    from seg.training.steps import StepSpec
    from seg.training.trainers import build_step

    bf16 = precision == "bf16"
    spec = StepSpec(
        3, 2, torch.device("cpu"), torch.bfloat16 if bf16 else None, bf16, total_steps=1000
    )
    return build_step(TrainConfig(), spec)


def step_times(store: Path, steps: int, batch: int, size: int) -> tuple[float, float]:
    """Median step seconds: fed by the real DataLoader (1 worker) vs synthetic tensors."""
    from seg.data.samplers import EpochSampler

    real, _ = datasets(store)
    step = build_step("bf16", size)
    sampler = EpochSampler(len(real), batch, steps + 1, seed=0, epoch=0)
    loader = DataLoader(real, batch_size=batch, sampler=sampler, num_workers=1, drop_last=True)
    with_loader, synthetic = [], []
    it = iter(loader)
    image, mask = next(it)
    step.train_step(image, mask)  # warm-up
    t = time.perf_counter()
    for image, mask in it:
        step.train_step(image, mask)
        now = time.perf_counter()
        with_loader.append(now - t)
        t = now
    fixed = [(image.clone(), mask.clone()) for _ in range(steps)]
    for image, mask in fixed:
        t = time.perf_counter()
        step.train_step(image, mask)
        synthetic.append(time.perf_counter() - t)
    return statistics.median(with_loader), statistics.median(synthetic)


def precision_child(precision: str, size: int, batch: int, steps: int) -> None:
    """Runs in its own process: print the median train-step seconds as JSON."""
    step = build_step(precision, size)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 2, (batch, size, size))
    step.train_step(x, y)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step.train_step(x, y)
        times.append(time.perf_counter() - t)
    print(json.dumps({"median_s": statistics.median(times)}))


def precision_times(size: int, batch: int, steps: int, threads: int) -> dict[str, float]:
    out = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for precision in ("fp32", "bf16"):
        cmd = [sys.executable, __file__, "--child", precision, "--size", str(size),
               "--batch", str(batch), "--steps", str(steps), "--threads", str(threads)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out[precision] = json.loads(res.stdout.strip().splitlines()[-1])["median_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--child", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        precision_child(args.child, args.size, args.batch, args.steps)
        return
    size, windows, batch, steps, passes = (
        (64, 8, 2, 2, 1) if args.quick else (args.size, 64, args.batch, args.steps, 7)
    )
    with tempfile.TemporaryDirectory(prefix="seg-bench-train-") as tmp:
        store = make_store(Path(tmp), size, windows)
        real, memory = datasets(store)
        store_rate, memory_rate, loader_ratio = loader_rates(real, memory, passes)
        t_loader, t_synth = step_times(store, steps, batch, size)
    prec = precision_times(size if not args.quick else 64, batch, steps, args.threads)
    print(f"windows {size}x{size}x3 uint8, batch {batch}, torch threads {args.threads}")
    print(f"loader    store {store_rate:8.1f} win/s   memory {memory_rate:8.1f} win/s"
          f"   ratio store/memory     {loader_ratio:.2f} (goal >= 0.9)")  # fmt: skip
    print(f"step      loader {t_loader:7.3f} s      synthetic {t_synth:7.3f} s"
          f"   ratio loader/synthetic {t_loader / t_synth:.2f} (goal <= 1.05)")  # fmt: skip
    print(f"precision fp32 {prec['fp32']:9.3f} s      bf16+channels_last {prec['bf16']:.3f} s"
          f"   ratio fp32/bf16 {prec['fp32'] / prec['bf16']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
