"""Is a gap between the window-border band and the interior a seam, or the band's ground?

`seg eval` scores the band within B px of the internal window borders of a mask against the
rest. A lower band can mean stitching costs IoU, or only that the band happens to lie on harder
ground. This bench tells the two apart with the same checkpoint: `seg predict` runs the scene
windowed (the shipped path) and as one window over the whole scene (`--window-size`: no
borders, so no seams at all), both with TTA and the coarse pass as `seg predict` runs them and
without the class-share adaptation (whose first pass would run other windows for each), and
both masks are scored on the same band of
the windowed grid. What the windowed gap has beyond the whole-scene gap is what the seams cost.

Usage: python bench/seams.py CHECKPOINT SCENE TRUTH [--work DIR] [--border 32] [--quick]
(--quick: a tiny synthetic scene and a checkpoint trained for a few steps, for the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


ROOT = Path(__file__).resolve().parents[1]


def seg(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "seg", *args], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"seg {' '.join(args)} failed: {proc.stderr[-2000:]}")


def band_scores(mask: Path, truth: str, work: Path, grid: tuple[int, int], border: int) -> dict:
    out = work / (mask.stem + "_eval")
    seg("eval", str(mask), truth, "--out", str(out), "--border", str(border),
        "--window-size", str(grid[0]), "--overlap", str(grid[1]))  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    s = report["seams"]
    return {"miou": report["miou"], "border": s["border_miou"], "interior": s["interior_miou"]}


def compare(checkpoint: str, scene: str, truth: str, work: Path, border: int) -> dict[str, Any]:
    """Both masks on the band of the windowed grid: mIoU, border and interior, and the gaps."""
    import rasterio

    windowed, whole = work / "windowed.tif", work / "whole.tif"
    flags = ("-k", checkpoint, "-q", "--overwrite", "--no-adapt-priors")
    seg("predict", scene, "--out", str(windowed), *flags)
    with rasterio.open(windowed) as ds:
        tag = json.loads(ds.tags()["SEG_WINDOW"])
        side = max(ds.height, ds.width)
    grid = (int(tag["size"]), int(tag["overlap"]))
    # One window over the whole scene: the smallest multiple of the training window covering it.
    seg("predict", scene, "--out", str(whole), "--window-size", str(-(-side // grid[0]) * grid[0]),
        *flags)  # fmt: skip
    result: dict[str, Any] = {"grid": grid, "border_px": border}
    for name, mask in (("windowed", windowed), ("whole", whole)):
        r = band_scores(mask, truth, work, grid, border)
        result[name] = {**r, "gap": r["border"] - r["interior"]}
    result["seam_cost"] = result["windowed"]["gap"] - result["whole"]["gap"]
    return result


def report(r: dict[str, Any]) -> str:
    w, h = r["windowed"], r["whole"]
    return (
        f"band within {r['border_px']} px of the borders of {r['grid'][0]} px windows"
        f" (overlap {r['grid'][1]}): windowed mIoU {w['miou']:.4f}, border - interior"
        f" {w['gap']:+.4f}; whole scene in one pass mIoU {h['miou']:.4f}, border - interior"
        f" {h['gap']:+.4f}; what the seams cost: {r['seam_cost']:+.4f}"
    )


def quick_inputs(work: Path) -> tuple[str, str, str]:
    """A synthetic scene, its truth, and a checkpoint trained on another scene for 80 steps."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import synthetic_pair, write_geotiff

    paths = []
    for i, (h, w) in enumerate([(160, 150), (200, 190)]):
        image, mask = synthetic_pair(h, w, 3, seed=i)
        paths.append((write_geotiff(work / f"s{i}.tif", image),
                      write_geotiff(work / f"labels/s{i}_mask.tif", mask)))  # fmt: skip
    seg("tile", str(paths[0][0]), "--labels", str(work / "labels"), "--size", "64",
        "--stride", "32", "--out", str(work / "ds.zarr"), "-q")  # fmt: skip
    seg("train", "--config", "configs/unet_mobilenetv2.yaml", "--data", str(work / "ds.zarr"),
        "--out", str(work / "run"), *[a for kv in (
            "train.epochs=2", "train.steps_per_epoch=40", "data.num_workers=0", "data.batch_size=4",
            "optim.lr=0.003", "schedule.warmup_steps=2", "augment.noise=0",
        ) for a in ("--set", kv)])  # fmt: skip
    return str(work / "run" / "best.pt"), str(paths[1][0]), str(paths[1][1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("scene", nargs="?")
    ap.add_argument("truth", nargs="?")
    ap.add_argument("--work", default=None)
    ap.add_argument("--border", type=int, default=32)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seg-seams-"))
    (work / "labels").mkdir(parents=True, exist_ok=True)
    if args.quick:
        checkpoint, scene, truth = quick_inputs(work)
        border = 4
    elif not (args.checkpoint and args.scene and args.truth):
        ap.error("give CHECKPOINT SCENE TRUTH, or --quick")
    else:
        checkpoint, scene, truth, border = args.checkpoint, args.scene, args.truth, args.border
    result = compare(checkpoint, scene, truth, work, border)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
