"""The `seg` command line: parse, call one library function, report.

No logic lives here. A `SegError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer

from seg.errors import SegError

app = typer.Typer(
    name="seg",
    help="Satellite and aerial scenes to georeferenced segmentation masks.\n\n"
    "Paths may be local or gs://. Typical flow: seg sample -> seg tile -> seg train -> seg predict"
    " -> seg eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def shards(index: int | None, count: int | None) -> tuple[int | None, int | None]:
    """--shard-index/--shard-count, defaulting to Cloud Batch's BATCH_TASK_INDEX/COUNT."""

    def env(name: str) -> int | None:
        value = os.environ.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            from seg.errors import ConfigError

            raise ConfigError(f"${name}={value!r} is not an integer; unset it or fix it") from None

    return (
        index if index is not None else env("BATCH_TASK_INDEX"),
        count if count is not None else env("BATCH_TASK_COUNT"),
    )


# --- commands are added below, one function per command, each calling one library function ---


@app.command("tile")
def tile_command(
    scenes: list[str] = typer.Argument(
        ...,
        help="GeoTIFF scenes: files, folders, globs or gs:// URLs (many at once).",
        show_default=False,
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="Window store to create or add to (local or gs://)."
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        "-l",
        help="Label rasters (a folder matched by scene name, or one file for one scene) or a vector"
        " file (GeoJSON, GeoPackage) rasterized on each scene's grid. Omit for unlabelled scenes.",
    ),
    size: int | None = typer.Option(
        None, help="Window size in pixels, a multiple of 32 (default 512)."
    ),
    stride: int | None = typer.Option(
        None, help="Step between windows; 256 with size 512 = 50% overlap (default: size)."
    ),
    bands: str | None = typer.Option(
        None, help="1-based bands to keep, e.g. 1,2,3 (default: all but alpha)."
    ),
    label_attr: str | None = typer.Option(
        None, help="Vector attribute holding class ids or names (default: all class 1)."
    ),
    label_crs: str | None = typer.Option(
        None,
        help="CRS of a vector file that has none, or 'scene' (default EPSG:4326).",
    ),
    label_buffer: float | None = typer.Option(
        None, help="Grow vector labels by metres, e.g. roads (default 0)."
    ),
    max_nodata: float | None = typer.Option(
        None, help="Skip windows with more nodata than this fraction (default 0.5)."
    ),
    allow_gaps: bool = typer.Option(False, "--allow-gaps", help="Allow stride > size (gaps)."),
    pixel_space: bool = typer.Option(
        False,
        "--pixel-space",
        help="Tile rasters without a georeference (e.g. GCPs only) in pixel coordinates.",
    ),
    config: str | None = typer.Option(
        None, "--config", "-c", help="YAML with tile settings (configs/tile.yaml)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a config key, e.g. --set splits.seed=1."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start the store over instead of resuming."
    ),
    shard_index: int | None = typer.Option(
        None,
        help="This machine's share of the scenes (default $BATCH_TASK_INDEX).",
        show_default=False,
    ),
    shard_count: int | None = typer.Option(
        None,
        help="How many machines share the scenes (default $BATCH_TASK_COUNT).",
        show_default=False,
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Cut scenes (and their labels) into windows in a zarr store, for `seg train`.

    Resumable: re-running skips finished scenes. Example:
    seg tile scenes/ --labels masks/ --out gs://bucket/ds.zarr --size 512 --stride 256
    """
    import json

    from seg.config import TileConfig, load_config
    from seg.tile import tile_scenes

    flags = {
        "size": size,
        "stride": stride,
        "label_attr": label_attr,
        "label_crs": label_crs,
        "label_buffer": label_buffer,
        "max_nodata": max_nodata,
        "allow_gaps": allow_gaps or None,
        "pixel_space": pixel_space or None,
    }
    # JSON values are YAML too: strings stay strings (--label-crs 32633), numbers stay numbers.
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    if bands:
        overrides.append(f"bands=[{bands}]")
    cfg = load_config(TileConfig, config, overrides + list(set_))
    shard_index, shard_count = shards(shard_index, shard_count)
    summary = tile_scenes(
        scenes,
        out,
        cfg,
        labels=labels,
        overwrite=overwrite,
        shard_index=shard_index,
        shard_count=shard_count,
        progress=not quiet,
    )
    typer.echo(f"tiled: {summary.line()}")


@app.command("sample")
def sample_command(
    out_dir: str = typer.Argument(
        ..., help="Folder to write the sample scenes into (local or gs://)."
    ),
    scenes: int = typer.Option(3, min=1, help="How many scenes."),
    size: int = typer.Option(512, min=64, help="Approximate scene size in pixels."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
) -> None:
    """Write a small synthetic labelled data set (GeoTIFF scenes, masks, GeoJSON) to try seg on."""
    from seg.sample import write_sample

    made = write_sample(out_dir, scenes=scenes, size=size, seed=seed)
    typer.echo(f"wrote {len(made.scenes)} scenes with masks and {made.geojson} in {out_dir}")
    typer.echo(f"next: seg tile {out_dir} --labels {out_dir} --out dataset.zarr")


@app.command("predict")
def predict_command(
    scenes: list[str] = typer.Argument(
        None, help="GeoTIFF scenes: files, folders, globs or gs:// URLs.", show_default=False
    ),
    checkpoint: str = typer.Option(
        ..., "--checkpoint", "-k", help="Checkpoint from `seg train` (local or gs://)."
    ),
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="A .tif for one scene, else a folder of <scene>_mask.tif files;"
        " with --store, a predictions zarr.",
    ),
    store: str | None = typer.Option(
        None, "--store", help="Predict the windows of a `seg tile` store (then `seg stitch`)."
    ),
    split: str | None = typer.Option(None, help="With --store: only this split's scenes."),
    overlap: int | None = typer.Option(
        None, help="Pixels shared by neighbouring windows (default: window size / 4)."
    ),
    batch_size: int = typer.Option(4, min=1, help="Windows per forward pass."),
    tta: bool = typer.Option(False, "--tta", help="Average flips and a quarter turn (4x slower)."),
    probabilities: bool = typer.Option(
        False, "--probabilities", help="Also write <mask>_probs.tif, one band per class."
    ),
    prob_dtype: str = typer.Option("uint8", help="uint8 (scaled by 254) or float16."),
    vector: str | None = typer.Option(
        None,
        help="Also write class polygons: a .geojson/.gpkg file (one scene), or geojson|gpkg"
        " for one file next to each mask.",
    ),
    bands: str | None = typer.Option(
        None, help="1-based scene bands to feed the model, e.g. 4,3,2 (default: as trained)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 on CPUs that have it, fp16 on GPU), fp32, bf16 or fp16."
    ),
    pixel_space: bool = typer.Option(
        False, "--pixel-space", help="Predict rasters without a georeference (the mask has none)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo scenes whose outputs exist."),
    shard_index: int | None = typer.Option(
        None, help="This machine's share of the scenes [$BATCH_TASK_INDEX].", show_default=False
    ),
    shard_count: int | None = typer.Option(
        None, help="How many machines share the scenes [$BATCH_TASK_COUNT].", show_default=False
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Segment scenes with a trained checkpoint: masks on exactly each scene's grid (COG).

    Example: seg predict scene.tif -k runs/exp1/best.pt --out scene_mask.tif --vector geojson
    """
    from seg.predict import predict_scenes

    shard_index, shard_count = shards(shard_index, shard_count)
    summary = predict_scenes(
        scenes or [],
        checkpoint,
        out,
        store=store,
        split=split,
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        probabilities=prob_dtype if probabilities else None,
        vector=vector,
        bands=bands,
        device=device,
        precision=precision,
        pixel_space=pixel_space,
        overwrite=overwrite,
        shard_index=shard_index,
        shard_count=shard_count,
        progress=not quiet,
    )
    typer.echo(f"predicted: {summary.line()}")


@app.command("stitch")
def stitch_command(
    predictions: str = typer.Argument(..., help="Predictions zarr from `seg predict --store`."),
    out: str = typer.Option(
        ..., "--out", "-o", help="Folder for one <scene>_mask.tif per scene (local or gs://)."
    ),
    probabilities: bool = typer.Option(
        False, "--probabilities", help="Also write <mask>_probs.tif."
    ),
    prob_dtype: str = typer.Option("uint8", help="uint8 (scaled by 254) or float16."),
    vector: str | None = typer.Option(
        None, help="Also write class polygons next to each mask: geojson or gpkg."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo scenes whose outputs exist."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Blend stored per-window predictions into one mask GeoTIFF per scene, on its own grid."""
    from seg.predictions import stitch_predictions

    summary = stitch_predictions(
        predictions,
        out,
        probabilities=prob_dtype if probabilities else None,
        vector=vector,
        overwrite=overwrite,
        progress=not quiet,
    )
    typer.echo(f"stitched: {summary.line()}")


@app.command("eval")
def eval_command(
    prediction: str = typer.Argument(..., help="Mask GeoTIFF from `seg predict`."),
    truth: str = typer.Argument(
        ..., help="Truth: a label raster on the same grid, or a GeoJSON/GeoPackage."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for report.json, report.md and overlay.png (default: <mask>_eval/).",
    ),
    image: str | None = typer.Option(
        None, help="Scene for the overlay's first panel (default: the mask's source)."
    ),
    window_size: int | None = typer.Option(
        None, help="Window size used to predict (default: from the mask's tags)."
    ),
    overlap: int | None = typer.Option(
        None, help="Window overlap used to predict (default: from the mask's tags)."
    ),
    border: int = typer.Option(8, min=1, help="Width of the band along internal window borders."),
    label_attr: str | None = typer.Option(
        None, help="Vector truth: attribute holding class ids or names (default: all class 1)."
    ),
    label_crs: str | None = typer.Option(
        None, help="Vector truth: its CRS when the file names none (default: EPSG:4326)."
    ),
) -> None:
    """Score a predicted mask against truth: IoU/F1/precision/recall, seams, overlay PNG."""
    from seg.evaluate import evaluate

    report = evaluate(
        prediction,
        truth,
        out=out,
        image=image,
        window_size=window_size,
        overlap=overlap,
        border=border,
        label_attr=label_attr,
        label_crs=label_crs,
    )
    typer.echo(report.markdown)
    typer.echo(f"wrote {', '.join(report.files)}")


@app.command("train")
def train_command(
    config: str = typer.Option(
        ..., "--config", "-c", help="Experiment YAML (configs/unet_mobilenetv2.yaml)."
    ),
    data: str = typer.Option(
        ..., "--data", "-d", help="Window store from `seg tile` (local or gs://)."
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="Run folder for checkpoints and logs (local or gs://)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a config key, e.g. --set train.epochs=3."
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="'auto': continue from the newest complete checkpoint in --out; or a checkpoint.",
    ),
    gpus: str | None = typer.Option(
        None, "--gpus", help="GPU indices, e.g. 0 or 0,1 (one per torchrun process)."
    ),
) -> None:
    """Train a segmentation model on a window store; resumable, exit 75 when preempted.

    Example: seg train --config configs/unet_mobilenetv2.yaml --data ds.zarr --out runs/exp1
    Several GPUs: torchrun --nproc-per-node 2 -m seg train ... --gpus 0,1
    """
    from seg.train import run_training

    result = run_training(config, data, out, list(set_), resume, gpus)
    best = f"{result.best:.4f}" if result.best is not None else "n/a"
    typer.echo(
        f"trained: {result.epoch} epochs, {result.step} steps ({result.reason});"
        f" best {result.metric} {best}; checkpoints in {result.run_dir}"
    )


queue_app = typer.Typer(
    help="Queue seg jobs (tile/train/predict, sweeps) on a Dask cluster or this machine.",
    no_args_is_help=True,
)
app.add_typer(queue_app, name="queue")


@queue_app.command("submit")
def queue_submit_command(
    jobs: str = typer.Argument(..., help="JOBS.yaml: jobs (seg commands) and sweeps (grids)."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler, e.g. tcp://host:8786; default: this machine."
    ),
    runs: str | None = typer.Option(
        None, "--runs", help="Folder for job state, logs and runs (local or gs://); default 'runs'."
    ),
    detach: bool = typer.Option(False, "--detach", help="Queue and exit (needs --scheduler)."),
) -> None:
    """Run the jobs of JOBS.yaml, retrying preempted ones; sweeps end with a leaderboard.

    Example: seg queue submit night.yaml --scheduler tcp://gpu-box:8786 --runs gs://b/runs/n1
    """
    from seg.queue import submit_jobs

    states = submit_jobs(jobs, scheduler, runs, detach)
    if states:
        typer.echo(f"all {len(states)} jobs done")


@queue_app.command("status")
def queue_status_command(
    runs: str = typer.Option("runs", "--runs", help="The runs folder given to `seg queue submit`."),
) -> None:
    """Each job's state, attempts, progress and best metric; sweep leaderboards."""
    from seg.jobstate import show_status

    show_status(runs)


@app.command("quickstart")
def quickstart_command(
    out: str = typer.Argument("quickstart", help="Folder (local or gs://) for all it makes."),
) -> None:
    """Run the whole main job on a built-in sample: sample -> tile -> train -> predict -> eval.

    Local files, CPU, no account, minutes on 2 cores; re-running skips finished steps.
    """
    from seg.quickstart import run_quickstart

    result = run_quickstart(out)
    typer.echo(f"mask:    {result.mask}")
    for path in result.files:
        typer.echo(f"report:  {path}")
    typer.echo(
        f"held-out scene: building IoU {result.report['building_iou']:.3f},"
        f" mIoU {result.report['miou']:.3f}"
    )


def main() -> None:
    try:
        app()
    except SegError as exc:
        print(f"seg: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("seg: interrupted", file=sys.stderr)
        sys.exit(130)
