"""pix2pix against plain UNet-MobileNetV2 training, side by side, with the same budget.

Both runs use the same store, settings and wall-clock budget, and run at the same time (one
thread each) so that they share whatever else loads the machine. Each last checkpoint then
predicts the validation scene through `seg predict`; the table gives building IoU and boundary
F1 (outline pixels matched within 2 and 3 px, seg.evaluation.metrics.boundary_f1) for both, and
the ratio pix2pix / unet.

Default data: the Kampala scenes in ../shared/data (train on the 1024x1024 scene, validate on the
3072x2048 one). `--quick`: tiny synthetic scenes and a few steps (a smoke test, not a result).

`--switches` adds a pix2pix run per stabiliser switch, each alone on top of configs/pix2pix.yaml
(SWITCHES below), all trained at the same time as the two base runs; `--variant NAME=K=V[,K=V]`
adds any other. Every run is compared with the UNet.

Usage: python bench/pix2pix.py [--quick] [--budget SECONDS] [--work DIR] [--eval-only]
                               [--switches] [--variant NAME=KEY=VALUE[,KEY=VALUE]]...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
KAMPALA = ROOT.parent / "shared" / "data" / "kampala"
MODELS = ("unet_mobilenetv2", "pix2pix")
# run name -> (config, --set values): the two base runs, then one per switch.
SWITCHES = {
    "pix2pix+d_scales2": ["pix2pix.d_scales=2"],
    "pix2pix+normal_labels": ["pix2pix.soft_label_width=0.2", "pix2pix.soft_label_dist=normal"],
    "pix2pix+mismatch": ["pix2pix.mismatch_prob=0.25"],
    "pix2pix+adaptive": ["pix2pix.lambda_adv=adaptive"],
    "pix2pix+feature_matching": ["pix2pix.feature_matching=10.0"],  # pix2pixHD's weight
}
Runs = dict[str, tuple[str, list[str]]]


def seg(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`seg ARGS` in a subprocess with one thread, its output going to `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seg", *args]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def check(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.wait() != 0:
        raise SystemExit(f"{proc.args!r} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")


def scenes(quick: bool, work: Path) -> tuple[Path, Path, Path, Path]:
    """(train image, train mask, val image, val mask)."""
    if not quick:
        k = KAMPALA
        return (
            k / "kampala_z21_1024x1024_image.tif",
            k / "kampala_z21_1024x1024_buildings_mask.tif",
            k / "kampala_z21_3072x2048_image.tif",
            k / "kampala_z21_3072x2048_buildings_mask.tif",
        )
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import synthetic_pair, write_geotiff

    out = []
    for name, size, seed in (("train", 128, 0), ("val", 160, 1)):
        image, mask = synthetic_pair(size, size, 3, seed)
        out += [
            write_geotiff(work / f"{name}.tif", image),
            write_geotiff(work / f"{name}_mask.tif", mask),
        ]
    return out[0], out[1], out[2], out[3]


def train_all(
    store: Path, work: Path, quick: bool, budget: float, runs: Runs
) -> dict[str, dict[str, float]]:
    """Train every run at the same time; wall and CPU seconds of each."""
    sets = [
        "data.num_workers=0",
        f"data.batch_size={2 if quick else 8}",
        f"data.max_val_windows={4 if quick else 32}",
        f"train.epochs={1 if quick else 60}",
        f"train.time_budget_s={budget}",
        "schedule.name=constant",
        "schedule.warmup_steps=10",
        "early_stopping.enabled=false",
        "train.log_every_steps=1",
        "pix2pix.instance_noise_steps=40",
    ] + (
        ["train.steps_per_epoch=2", "train.precision=fp32", "train.preview_windows=0"]
        if quick
        else []
    )
    procs = {}
    for name, (config, extra) in runs.items():
        args = ["train", "--config", str(ROOT / "configs" / f"{config}.yaml"), "--data", str(store)]
        args += ["--out", str(work / name)]
        for s in [*sets, *extra]:
            args += ["--set", s]
        procs[name] = (seg(work / f"{name}.log", *args), time.perf_counter())
    stats = {}
    for name, (proc, t0) in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it, with its own CPU time
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(
                f"training {name} failed:\n{(work / f'{name}.log').read_text()[-3000:]}"
            )
        stats[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime}
    return stats


def evaluate(mask_path: Path, truth_path: Path, valid: np.ndarray) -> dict[str, float]:
    from seg.evaluation.metrics import boundary_counts, boundary_f1

    with rasterio.open(mask_path) as src:
        pred = src.read(1)
    with rasterio.open(truth_path) as src:
        truth = src.read(1).copy()
    truth[~valid] = 255  # no-data pixels of the image count nowhere
    keep = truth != 255
    p, t = pred[keep] == 1, truth[keep] == 1
    union = int((p | t).sum())
    return {
        "iou": float((p & t).sum() / union) if union else 0.0,
        "bf1_2px": boundary_f1(boundary_counts(pred, truth, 1, tolerance=2)),
        "bf1_3px": boundary_f1(boundary_counts(pred, truth, 1, tolerance=3)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny synthetic data, a few steps")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds of training per model")
    ap.add_argument("--work", type=Path, default=None, help="keep the store and runs here")
    ap.add_argument("--eval-only", action="store_true", help="evaluate runs already in --work")
    ap.add_argument("--switches", action="store_true", help="a pix2pix run per switch too")
    ap.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE[,KEY=VALUE]")
    args = ap.parse_args()
    runs: Runs = {name: (name, []) for name in MODELS}
    if args.switches:
        runs |= {name: ("pix2pix", sets) for name, sets in SWITCHES.items()}
    for text in args.variant:
        name, _, sets = text.partition("=")
        if not sets:
            raise SystemExit(f"--variant {text!r}: give NAME=KEY=VALUE[,KEY=VALUE]")
        # split at commas that start the next key=value (values may be lists: [128, 64])
        runs[name] = ("pix2pix", re.split(r",(?=\s*[a-z0-9_]+\.[a-z0-9_.]+=)", sets))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pix2pix-"))
    work.mkdir(parents=True, exist_ok=True)
    train_img, train_mask, val_img, val_mask = scenes(args.quick, work)
    if not train_img.exists():
        raise SystemExit(f"{train_img} is missing (../shared/data is absent); try --quick")
    store = work / "ds.zarr"
    train_stats: dict[str, dict[str, float]] = {}
    if not args.eval_only:
        size = 64 if args.quick else 256
        log = work / "tile.log"
        check(
            seg(log, "tile", str(train_img), str(val_img), "--out", str(store), "-q",
                "--size", str(size), "--stride", str(size // 2),
                "--set", f"labels_map={{{train_img.stem}: {train_mask},"
                         f" {val_img.stem}: {val_mask}}}",
                "--set", f"splits.train_scenes=[{train_img.stem}]",
                "--set", f"splits.val_scenes=[{val_img.stem}]"),
            log,
        )  # fmt: skip
        budget = 30.0 if args.quick else args.budget
        train_stats = train_all(store, work, args.quick, budget, runs)
    with rasterio.open(val_img) as src:
        valid = src.dataset_mask() > 0
    from seg.checkpoint import load_checkpoint

    preds = {}
    for name in runs:  # every prediction at once, like the training runs
        out, log = work / f"{name}_val_mask.tif", work / f"{name}_predict.log"
        ckpt = str(work / name / "last.pt")
        proc = seg(log, "predict", str(val_img), "--checkpoint", ckpt, "--out", str(out), "-q",
                   "--overwrite")  # fmt: skip
        preds[name] = (proc, log, out, ckpt)
    rows = {}
    for name, (proc, log, out, ckpt) in preds.items():
        check(proc, log)
        steps = int(load_checkpoint(ckpt)["step"])
        rows[name] = {**evaluate(out, val_mask, valid), "steps": steps, **train_stats.get(name, {})}
    keys = ["iou", "bf1_2px", "bf1_3px", "steps", "wall_s", "cpu_s"]
    keys = [k for k in keys if all(k in r for r in rows.values())]
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, r in rows.items():
        print(
            f"| {name} | "
            + " | ".join(f"{r[k]:.3f}" if k != "steps" else str(r[k]) for k in keys)
            + " |"
        )
    u = rows["unet_mobilenetv2"]
    all_ratios = {}
    for name in list(runs)[1:]:
        p = rows[name]
        ratios = {k: p[k] / u[k] if u[k] else float("nan") for k in keys}
        print(f"| ratio {name}/unet | " + " | ".join(f"{ratios[k]:.2f}" for k in keys) + " |")
        all_ratios[name] = ratios
    ratios = all_ratios["pix2pix"]
    print(json.dumps({"rows": rows, "ratios": ratios, "per_run": all_ratios, "work": str(work)}))


if __name__ == "__main__":
    main()
