"""Benchmark `seg predict`: overhead over the bare network, memory vs scene size, and a
whole-array stitcher (pytorch-toolbelt's TileMerger) side by side.

    python bench/predict.py          # 2048² overhead; 4096², 8192², 16384² memory; 8192² merger
    python bench/predict.py --quick  # tiny, one process, 1x1-conv only: tests/test_bench_predict.py

In the full run every measurement runs in its own fresh subprocess (timings that share a process
swing); the overhead pair runs twice and the faster of each counts. Peak memory is the largest
RSS sampled every 5 ms while the job runs (imports excluded: torch alone is ~0.7 GB).
Ratios are printed from one run, side by side:
- overhead = `seg predict` time / bare forward time over the same number of windows (goal <= 1.10);
- memory   = peak RSS at each scene size, and largest / smallest (goal: flat, <= 1.2);
- merger   = TileMerger time and peak RSS / `seg predict`'s on the same scene and model;
- runtime  = `seg predict` with the UNet checkpoint on torch vs its ONNX export on ONNX Runtime
  (`seg export --format onnx`), same scene: time ratio and the share of equal mask pixels.
Memory and merger runs use a per-pixel 1x1-conv network so that a 16384² scene takes seconds:
the network's own memory is per batch, the same at every scene size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder is sys.path[0]; a sibling such as bench/queue.py would then
# shadow the standard library module of that name (torch imports `queue`).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
C, K = 3, 2


class PeakRSS:
    """Largest resident set size (MB) seen while the `with` block runs, sampled every 5 ms."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def make_scene(path: str, size: int) -> None:
    """A size x size RGB uint8 tiled GeoTIFF, written strip by strip (bounded memory)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": C,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 4000000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 512):
            h = min(512, size - r)
            strip = rng.integers(40, 200, (C, h, size), dtype=np.uint8)
            strip[:, :, (np.arange(size) // 64) % 5 == 0] = 230  # some structure
            dst.write(strip, window=((r, r + h), (0, size)))


def network(kind: str, ckpt: str, size: int) -> tuple[Any, Any]:
    """(Predictor, CheckpointInfo): the checkpoint's UNet, or a per-pixel 1x1 conv."""
    import torch

    from seg.checkpoint import CheckpointInfo
    from seg.inference.predictor import Predictor, load_predictor

    if kind == "unet":
        return load_predictor(ckpt)
    if kind == "onnx":
        from seg.inference.onnx_predictor import load_onnx

        return load_onnx(ckpt)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(C, K, 1)
    info = CheckpointInfo(
        model={"name": "conv1x1", "in_channels": C, "num_classes": K},
        class_names=("a", "b"),
        bands=(1, 2, 3),
        mean=(120.0,) * C,
        std=(50.0,) * C,
        size=size,
        dtype="uint8",
    )
    return Predictor(conv), info


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(job.get("threads") or torch.get_num_threads())
    if job["kind"] == "scene":
        make_scene(job["scene"], job["size"])
        return {}
    if job["kind"] == "baseline":  # the interpreter with torch and seg imported
        import psutil

        import seg.inference.scenes  # noqa: F401

        return {"rss_mb": psutil.Process().memory_info().rss / 2**20}
    with PeakRSS() as peak:
        result = measure(job)
    return {**result, "rss_mb": peak.mb}


def measure(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    pred, info = network(job["model"], job["ckpt"], job["window"])
    size, stride = job["window"], job["window"] - job["overlap"]
    if job["kind"] == "predict":
        from seg.inference.options import PredictOptions
        from seg.inference.scenes import predict_with

        # The machinery around one network pass per window: no coarse pass (an ONNX export and
        # the bare loop run none, and its cost is the network's, measured in docs/recipe.md).
        options = PredictOptions(
            overlap=job["overlap"], batch_size=job["batch"], overwrite=True, coarse_pass="off"
        )
        s = predict_with(
            pred, info, [job["scene"]], out=job["out"], source=job["ckpt"], options=options
        )
        return {"seconds": time.perf_counter() - started, "windows": s.windows}
    if job["kind"] == "bare":
        import numpy as np

        from seg.geo.grid import windows

        n = len(windows(job["height"], job["width"], size, stride))
        x = np.random.default_rng(0).normal(size=(job["batch"], C, size, size)).astype(np.float32)
        for start in range(0, n, job["batch"]):
            pred(x[: min(job["batch"], n - start)])
        return {"seconds": time.perf_counter() - started, "windows": n}
    if job["kind"] == "toolbelt":
        return toolbelt(job, pred, info, size, stride, started)
    raise ValueError(job["kind"])


def toolbelt(
    job: dict[str, Any], pred: Any, info: Any, size: int, stride: int, started: float
) -> dict[str, Any]:
    """The usual whole-array approach: read the scene, slice, merge into (K, H, W), write."""
    import numpy as np
    import rasterio
    import torch
    from pytorch_toolbelt.inference.tiles import ImageSlicer, TileMerger

    from seg.data.window_prep import Normalisation

    with rasterio.open(job["scene"]) as src:
        image = src.read()  # (C, H, W): the whole scene
        profile = src.profile
    hwc = np.moveaxis(image, 0, -1)  # (H, W, C) view, as ImageSlicer expects
    slicer = ImageSlicer(hwc.shape, tile_size=size, tile_step=stride, weight="pyramid")
    merger = TileMerger(slicer.target_shape, K, slicer.weight)
    norm = Normalisation(np.asarray(info.mean), np.asarray(info.std))
    tiles, coords = [], []
    n = 0
    for tile, crop in slicer.iter_split(hwc):
        tiles.append(norm.apply(np.moveaxis(tile, -1, 0)))
        coords.append(crop)
        if len(tiles) == job["batch"]:
            merger.integrate_batch(torch.from_numpy(pred(np.stack(tiles))), coords)
            n += len(tiles)
            tiles, coords = [], []
    if tiles:
        merger.integrate_batch(torch.from_numpy(pred(np.stack(tiles))), coords)
        n += len(tiles)
    merged = slicer.crop_to_orignal_size(np.moveaxis(merger.merge().numpy(), 0, -1))
    classes = merged.argmax(axis=-1).astype(np.uint8)  # (H, W)
    profile.update(count=1, dtype="uint8", compress="deflate", tiled=True)
    with rasterio.open(job["out"], "w", **profile) as dst:
        dst.write(classes, 1)
    return {"seconds": time.perf_counter() - started, "windows": n}


def run(job: dict[str, Any], fresh: bool = True) -> dict[str, Any]:
    """Run one job in a fresh subprocess (or here, for --quick)."""
    if not fresh:
        return worker(job)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {job['kind']} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker [torch's]")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    q = args.quick
    fresh = not q  # --quick runs everything in this process: a smoke test of the machinery
    window, overlap, batch = (64, 16, 4) if q else (512, 128, 4)
    overhead_size = 192 if q else 2048
    sizes = [256, 512, 1024] if q else [4096, 8192, 16384]
    merger_size = 512 if q else 8192
    results: dict[str, Any] = {"quick": q, "window": window, "overlap": overlap, "batch": batch}
    with tempfile.TemporaryDirectory(prefix="seg-bench-") as tmp:
        ckpt = str(Path(tmp) / "unet.pt")
        make_unet_checkpoint(ckpt, window)
        common = {"ckpt": ckpt, "window": window, "overlap": overlap, "batch": batch}
        common["threads"] = args.threads
        scenes = {}
        for s in sorted({overhead_size, merger_size, *sizes}):
            scenes[s] = str(Path(tmp) / f"scene_{s}.tif")
            run({"kind": "scene", "scene": scenes[s], "size": s}, fresh)

        def job(kind: str, model: str, size: int, out: str = "out.tif") -> dict[str, Any]:
            spec = {**common, "kind": kind, "model": model, "scene": scenes[size]}
            spec.update(height=size, width=size, out=str(Path(tmp) / out))
            return run(spec, fresh)

        # 1. Overhead: the whole command vs the network alone on as many windows. Bare and full
        # runs alternate, and the median of the per-pair ratios is reported, so a burst of load
        # from elsewhere on the machine hits one pair, not one side.
        net, repeats = ("pixel", 1) if q else ("unet", 3)
        pairs = [
            (job("bare", net, overhead_size), job("predict", net, overhead_size))
            for _ in range(repeats)
        ]
        ratios = sorted(full["seconds"] / bare["seconds"] for bare, full in pairs)
        bare = min((b for b, _ in pairs), key=seconds)
        full = min((f for _, f in pairs), key=seconds)
        results["overhead"] = {
            "size": overhead_size,
            "network": net,
            "bare_s": bare["seconds"],
            "predict_s": full["seconds"],
            "windows": full["windows"],
            "ratio": ratios[len(ratios) // 2],
            "pair_ratios": ratios,
        }
        # 2. Memory at growing scene sizes.
        base = run({"kind": "baseline"}, fresh)["rss_mb"]
        mem = {s: job("predict", "pixel", s, f"m{s}.tif")["rss_mb"] for s in sizes}
        results["memory"] = {
            "baseline_rss_mb": base,
            "peak_rss_mb": mem,
            "ratio_largest_smallest": mem[sizes[-1]] / mem[sizes[0]],
            "above_baseline_mb": {s: v - base for s, v in mem.items()},
        }
        # 4 (first: the UNet runs on the overhead scene). torch vs ONNX Runtime, same model.
        from seg.inference.export import export_model

        onnx_path = str(Path(tmp) / "unet.onnx")
        export_model(ckpt, "onnx", onnx_path)
        on_torch = job("predict", "unet", overhead_size, "torch.tif")
        spec = {**common, "ckpt": onnx_path, "kind": "predict", "model": "onnx"}
        spec.update(scene=scenes[overhead_size], height=overhead_size, width=overhead_size)
        on_ort = run({**spec, "out": str(Path(tmp) / "ort.tif")}, fresh)
        import rasterio

        with rasterio.open(Path(tmp) / "torch.tif") as a, rasterio.open(Path(tmp) / "ort.tif") as b:
            same = float((a.read(1) == b.read(1)).mean())
        results["runtime"] = {
            "size": overhead_size,
            "torch_s": on_torch["seconds"],
            "onnxruntime_s": on_ort["seconds"],
            "time_ratio": on_ort["seconds"] / on_torch["seconds"],
            "equal_pixels": same,
        }
        # 3. Whole-array merger vs ours, same scene, same network.
        ours = job("predict", "pixel", merger_size, "ours.tif")
        tb = job("toolbelt", "pixel", merger_size, "tb.tif")
        results["merger"] = {
            "size": merger_size,
            "seg_s": ours["seconds"],
            "seg_rss_mb": ours["rss_mb"],
            "toolbelt_s": tb["seconds"],
            "toolbelt_rss_mb": tb["rss_mb"],
            "time_ratio": tb["seconds"] / ours["seconds"],
            "rss_ratio": tb["rss_mb"] / ours["rss_mb"],
        }
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def seconds(result: dict[str, Any]) -> float:
    return float(result["seconds"])


def make_unet_checkpoint(path: str, size: int) -> None:
    import torch

    from seg.checkpoint import CheckpointInfo, save_checkpoint
    from seg.models import build_model

    torch.manual_seed(0)
    info = CheckpointInfo(
        model={"name": "unet_mobilenetv2", "in_channels": C, "num_classes": K},
        class_names=("background", "building"),
        bands=(1, 2, 3),
        mean=(120.0,) * C,
        std=(50.0,) * C,
        size=size,
        dtype="uint8",
    )
    save_checkpoint(path, info, build_model(info.model).state_dict())


def report(r: dict[str, Any]) -> None:
    o, m, g = r["overhead"], r["memory"], r["merger"]
    print(f"window {r['window']} overlap {r['overlap']} batch {r['batch']}")
    print(
        f"overhead  {o['size']}² {o['network']}, {o['windows']} windows:"
        f" seg predict {o['predict_s']:.2f} s, bare forward {o['bare_s']:.2f} s (best of each)"
        f" -> median pair ratio {o['ratio']:.3f} of"
        f" {', '.join(f'{x:.2f}' for x in o['pair_ratios'])}"
        " (goal <= 1.10)"
    )
    sizes = "  ".join(f"{s}²: {v:.0f} MB" for s, v in m["peak_rss_mb"].items())
    print(
        f"memory    peak RSS {sizes} (torch + seg imported: {m['baseline_rss_mb']:.0f} MB)"
        f" -> largest/smallest {m['ratio_largest_smallest']:.3f} (goal <= 1.2)"
    )
    print(
        f"merger    {g['size']}²: seg predict {g['seg_s']:.2f} s / {g['seg_rss_mb']:.0f} MB,"
        f" toolbelt TileMerger {g['toolbelt_s']:.2f} s / {g['toolbelt_rss_mb']:.0f} MB"
        f" -> TileMerger/seg time {g['time_ratio']:.2f}x, memory {g['rss_ratio']:.2f}x"
    )
    t = r["runtime"]
    print(
        f"runtime   {t['size']}² UNet: torch {t['torch_s']:.2f} s, ONNX Runtime"
        f" {t['onnxruntime_s']:.2f} s -> ORT/torch time {t['time_ratio']:.2f}x,"
        f" equal mask pixels {t['equal_pixels']:.4f}"
    )


if __name__ == "__main__":
    main()
