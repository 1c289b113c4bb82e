"""A pruned Optuna search against the full grid, side by side, through `seg queue submit` on
the embedded LocalCluster (one worker on a CPU box, one per GPU otherwise).

Both sweeps train the same model on the same store over the same learning rates: the grid
runs every one to its last epoch; the search (`search: optuna`, TPE, as many trials as the grid
has points) stops the trials whose validation mIoU falls below the median of the earlier ones
at the same epoch. Printed: wall time of each and their ratio, epochs trained, trials pruned,
and the best validation mIoU each found (the leaderboards' figure: validation windows, which
ranks trials; whole-scene accuracy is bench/quality.py's job).

Default data: the Kampala 1024 x 1024 scene in ../shared/data, rows 0-767 for training and
768-1023 for validation, cut into 256 px windows. `--quick`: tiny synthetic scenes, two
trials of two epochs (a smoke test, not a result).

Usage: python bench/search.py [--quick] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

ROOT = Path(__file__).resolve().parents[1]
KAMPALA = ROOT.parent / "shared" / "data" / "kampala"
LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]


def seg(*args: str, cwd: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "seg", *args], cwd=cwd, capture_output=True,
                         text=True, check=False)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"seg {' '.join(args[:2])} failed:\n{out.stdout[-2000:]}{out.stderr}")


def scenes(quick: bool, work: Path) -> tuple[Path, Path]:
    """A folder of scenes (train.tif, val.tif) and one of their masks."""
    images, labels = work / "scenes", work / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    if quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import synthetic_pair, write_geotiff

        for i, name in enumerate(("train", "val")):
            image, mask = synthetic_pair(96, 96, 3, seed=i)
            write_geotiff(images / f"{name}.tif", image)
            write_geotiff(labels / f"{name}_mask.tif", mask)
        return images, labels
    sys.path.insert(0, str(ROOT / "bench"))
    from quality import crop

    stem = KAMPALA / "kampala_z21_1024x1024"
    for name, rows in (("train", (0, 768)), ("val", (768, 1024))):
        crop(Path(f"{stem}_image.tif"), images / f"{name}.tif", rows)
        crop(Path(f"{stem}_buildings_mask.tif"), labels / f"{name}_mask.tif", rows)
    return images, labels


def sweep(name: str, store: Path, quick: bool, **keys: Any) -> dict[str, Any]:
    epochs, steps = (2, 2) if quick else (6, 6)
    sets = [
        f"train.epochs={epochs}", f"train.steps_per_epoch={steps}", "data.batch_size=4",
        "data.num_workers=0", "early_stopping.enabled=false", "train.preview_windows=0",
        "checkpoint.every_epochs=null", "schedule.warmup_steps=0",
    ]  # fmt: skip
    return {"name": name, "config": str(ROOT / "configs" / "unet_mobilenetv2.yaml"),
            "data": str(store), "set": sets, **keys}  # fmt: skip


def submit(spec: dict[str, Any], work: Path, name: str) -> float:
    jobs = work / f"{name}.yaml"
    jobs.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.perf_counter()
    seg("queue", "submit", str(jobs), "--runs", str(work / "runs"), cwd=ROOT)
    return time.perf_counter() - t0


def outcome(work: Path, name: str, wall: float) -> dict[str, Any]:
    with open(work / "runs" / name / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    best = rows[0]
    return {
        "wall_s": round(wall, 1),
        "trials": len(rows),
        "pruned": sum(r["state"].startswith("pruned") for r in rows),
        "epochs": sum(int(r["epochs"]) for r in rows),
        "best_miou": float(best["best_miou"]) if best["best_miou"] else None,
        "best_lr": float(best["optim.lr"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.quick and not KAMPALA.exists():
        raise SystemExit(f"{KAMPALA} is absent: run with --quick, or add ../shared/data")
    work = args.work or Path(tempfile.mkdtemp(prefix="seg-bench-search-"))
    images, labels = scenes(args.quick, work)
    store = work / "ds.zarr"
    size = "64" if args.quick else "256"
    splits = ["--set", "splits.train_scenes=[train]", "--set", "splits.val_scenes=[val]"]
    tile = [str(images), "--labels", str(labels), "--size", size, "--stride", size, *splits]
    seg("tile", *tile, "--out", str(store), "-q", cwd=ROOT)
    lrs = [1e-5, 3e-2] if args.quick else LRS
    grid = sweep("grid", store, args.quick, grid={"optim.lr": lrs})
    prune = {"median": {"startup_trials": 1 if args.quick else 2, "warmup_epochs": 1}}
    search = sweep("search", store, args.quick, search="optuna", trials=len(lrs),
                   space={"optim.lr": lrs}, prune=prune)  # fmt: skip
    rows = {
        "grid": outcome(work, "grid", submit({"sweeps": [grid]}, work, "grid")),
        "search": outcome(work, "search", submit({"sweeps": [search]}, work, "search")),
    }
    g, s = rows["grid"], rows["search"]
    ratio = s["wall_s"] / g["wall_s"]
    print(f"{'':8} {'wall s':>8} {'trials':>7} {'pruned':>7} {'epochs':>7} {'best mIoU':>10} lr")
    for name, r in rows.items():
        print(f"{name:8} {r['wall_s']:8.1f} {r['trials']:7d} {r['pruned']:7d} {r['epochs']:7d}"
              f" {r['best_miou']:10.4f} {r['best_lr']:g}")  # fmt: skip
    print(f"search / grid wall time: {ratio:.2f}; best mIoU difference (search - grid):"
          f" {s['best_miou'] - g['best_miou']:+.4f}")  # fmt: skip
    line = json.dumps({**rows, "wall_ratio": round(ratio, 3), "quick": args.quick})
    print(line)
    if args.json:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
