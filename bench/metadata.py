"""Scene-metadata conditioning (`model.metadata`), measured: plain vs FiLM vs the FLAIR-style
deep vector, side by side in one run, one job at a time, each given the same training budget.

- **seasons** (synthetic, seg.data.synthetic.write_seasons): the same bright fields are crop in
  June scenes and background in December ones, so only the acquisition time explains the
  labels. 8 train + 2 val scenes of 128 px, 2 held-out scenes (one of each season), 64 px
  windows; the conditioned runs use `model.metadata=[day_of_year]`.
- **kampala**, **vegas** (real, ../shared/data; as bench/quality.py builds them): one training
  scene each, so lat/lon/GSD are the same on every training window and carry no signal; the
  conditioned runs use `[lat, lon, gsd]` from the georeference. This measures what
  conditioning costs where it cannot help (the honest "no gain" case).

Every run goes through the real CLI (`seg tile -> train -> predict -> eval`); scores are on
whole held-out scenes. Printed per set and variant: mIoU, per-class IoU, steps, s/step, and
the parameter count; then conditioned minus plain.

Usage: python bench/metadata.py [--budget 300] [--seasons-budget 90] [--sets seasons,kampala,vegas]
       [--variants plain,film,deep] [--quick] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from quality import data_sets, run, score  # noqa: E402

FIELDS = {"seasons": "[day_of_year]", "real": "[lat, lon, gsd]"}
MECHANISM = {"film": "film", "deep": "deep"}


def seasons(work: Path, size: int, scenes: int) -> dict[str, Any]:
    """Write and tile the seasons set; its store and held-out (scene, mask) pairs."""
    from seg.data.synthetic import write_seasons

    made = write_seasons(str(work / "scenes"), scenes=scenes + 2, size=size)
    ids = [Path(s).stem for s, _, _ in made]
    train, val = ids[: scenes - 2], ids[scenes - 2 : scenes]
    store = work / "ds.zarr"
    if not store.exists():
        run(
            ["tile", *[s for s, _, _ in made[:scenes]], "--labels", str(work / "scenes" / "masks"),
             "--out", str(store), "--size", "64", "-q", "--set", f"splits.train_scenes={train}",
             "--set", f"splits.val_scenes={val}", "--set", "classes=[background, crop]"],
            work / "tile.log",
        )  # fmt: skip
    return {"store": store, "test": [(s, m) for s, m, _ in made[scenes:]], "window": 64}


def real(name: str, pairs: dict[str, list[tuple[str, str]]], work: Path) -> dict[str, Any]:
    """Tile a real set's training scenes as bench/quality.py does (512 px, stride 256)."""
    labels = work / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    for s, m in pairs["train"]:
        link = labels / (Path(s).stem + "_mask.tif")
        if not link.exists():
            link.symlink_to(m)
    store = work / "ds.zarr"
    if not store.exists():
        scenes = [s for s, _ in pairs["train"]]
        run(
            ["tile", *scenes, "--labels", str(labels), "--size", "512", "--stride", "256",
             "--out", str(store), "-q"],
            work / "tile.log",
        )  # fmt: skip
    return {"store": store, "test": pairs["test"], "window": 512}


def train_and_score(
    data: dict[str, Any], variant: str, fields: str, budget: float, work: Path, extra: list[str]
) -> dict[str, Any]:
    from seg.checkpoint import load_checkpoint

    out = work / variant
    out.mkdir(parents=True, exist_ok=True)
    sets = [f"train.time_budget_s={budget}", *extra]
    if variant != "plain":
        sets += [f"model.metadata={fields}", f"model.metadata_mechanism={MECHANISM[variant]}"]
    log = out / "seg.log"
    cmd = ["train", "--config", "configs/unet_mobilenetv2.yaml", "--data", str(data["store"])]
    cmd += ["--out", str(out / "run"), *[a for s in sets for a in ("--set", s)]]
    train_s = run(cmd, log)
    summary = json.loads((out / "run" / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = int(records[-1]["step"]) if records else 0
    spent = summary.get("spent") or {}
    masks = []
    for i, (scene, _) in enumerate(data["test"]):
        mask = out / f"pred_{i}_mask.tif"
        run(["predict", scene, "-k", str(out / "run" / "best.pt"), "--out", str(mask), "-q",
             "--overwrite"], log)  # fmt: skip
        masks.append(str(mask))
    scored = score(masks, [m for _, m in data["test"]], out, None)
    state = load_checkpoint(str(out / "run" / "best.pt"))
    params = sum(int(v.numel()) for v in state["state_dict"].values())
    return {
        **scored,
        "steps": steps,
        "s_per_step": (spent.get("train", train_s) / steps) if steps else float("nan"),
        "parameters": params,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds, real sets")
    ap.add_argument("--seasons-budget", type=float, default=90.0)
    ap.add_argument("--sets", default="seasons,kampala,vegas")
    ap.add_argument("--variants", default="plain,film,deep")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seg-metadata-"))
    work.mkdir(parents=True, exist_ok=True)
    names = args.sets.split(",")
    variants = args.variants.split(",")
    small = ["model.decoder_channels=[64,32,16,16,8]", "data.batch_size=8"]
    results: dict[str, Any] = {}
    for name in names:
        if name == "seasons":
            data = seasons(work / name, 64 if args.quick else 128, 4 if args.quick else 10)
            budget = 60.0 if args.quick else args.seasons_budget
            # quick: a few steps, whatever the machine's speed (a budget of seconds is refused
            # on a loaded machine whose start-up alone takes them)
            fields, extra = FIELDS["seasons"], small + (["train.max_steps=3"] if args.quick else [])
        else:
            pairs = data_sets([name], False, work)[name]
            data, budget, fields, extra = (
                real(name, pairs, work / name),
                args.budget,
                FIELDS["real"],
                [],
            )
        row = {v: train_and_score(data, v, fields, budget, work / name, extra) for v in variants}
        results[name] = row
        report(name, row, budget)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def report(name: str, row: dict[str, Any], budget: float) -> None:
    print(f"== {name} ({budget:g} s of training each)")
    for who, r in row.items():
        ious = " ".join(f"{c}={v['iou']:.3f}" for c, v in r["per_class"].items())
        print(
            f"{who:6s} mIoU {r['miou']:.4f} ({ious}); steps {r['steps']},"
            f" {r['s_per_step']:.3f} s/step, {r['parameters']} parameters"
        )
    if "plain" in row:
        for who, r in row.items():
            if who != "plain":
                d = r["miou"] - row["plain"]["miou"]
                extra = r["parameters"] - row["plain"]["parameters"]
                ratio = r["s_per_step"] / row["plain"]["s_per_step"]
                print(f"{who} - plain: mIoU {d:+.4f}, +{extra} parameters, step time x{ratio:.2f}")


if __name__ == "__main__":
    main()
