"""`seg train`, `seg predict`, `seg stitch`, `seg eval`: a store into a model, a model into masks,
masks against truth."""

from __future__ import annotations

import typer

from seg.cli.app import app, command
from seg.report import ConsoleReporter


@command(app, "train")
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
    from seg.errors import preempt_on_sigterm

    preempt_on_sigterm()  # before the seconds of importing torch and setting the run up
    from seg.training.run import run_training

    result = run_training(
        config,
        data,
        out,
        overrides=list(set_),
        resume=resume,
        gpus=gpus,
        reporter=ConsoleReporter(),
    )
    best = f"{result.best:.4f}" if result.best is not None else "n/a"
    typer.echo(
        f"trained: {result.epoch} epochs, {result.step} steps, {result.windows_seen} windows"
        f" ({result.reason}); best {result.metric} {best}; checkpoints in {result.run_dir}"
    )
    if result.spent:
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in result.spent.items())
        typer.echo(f"time: {parts}")


@command(app, "predict")
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
    from seg.errors import ConfigError
    from seg.inference.options import PredictOptions, parse_bands
    from seg.inference.scenes import predict_scenes
    from seg.inference.store_predictions import predict_store
    from seg.shards import Shard

    options = PredictOptions(
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        probabilities=prob_dtype if probabilities else None,
        vector=vector,
        bands=parse_bands(bands),
        device=device,
        precision=precision,
        pixel_space=pixel_space,
        overwrite=overwrite,
        shard=Shard.of(shard_index, shard_count),
    )
    reporter = ConsoleReporter(progress=not quiet)
    if store is not None and scenes:
        raise ConfigError("give either SCENE... or --store, not both")
    if store is not None:
        summary = predict_store(
            store, checkpoint=checkpoint, out=out, split=split, options=options, reporter=reporter
        )
    else:
        summary = predict_scenes(
            scenes or [], checkpoint=checkpoint, out=out, options=options, reporter=reporter
        )
    typer.echo(f"predicted: {summary.line()}")


@command(app, "stitch")
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
    from seg.inference.store_predictions import stitch_predictions

    summary = stitch_predictions(
        predictions,
        out,
        probabilities=prob_dtype if probabilities else None,
        vector=vector,
        overwrite=overwrite,
        reporter=ConsoleReporter(progress=not quiet),
    )
    typer.echo(f"stitched: {summary.line()}")


@command(app, "info")
def info_command(
    path: str = typer.Argument(..., help="A window store, checkpoint, mask or raster."),
) -> None:
    """Say what a store, checkpoint, mask or raster is: classes, bands, sizes, provenance."""
    import yaml

    from seg.inference.describe import describe

    typer.echo(yaml.safe_dump(describe(path), sort_keys=False, width=100).rstrip())


@command(app, "eval")
def eval_command(
    prediction: str | None = typer.Argument(
        None,
        help="Mask GeoTIFF from `seg predict`, or many: a folder or glob of masks.",
        show_default=False,
    ),
    truth: str | None = typer.Argument(
        None,
        help="Truth: a label raster on the same grid, or a GeoJSON/GeoPackage; for many masks,"
        " a folder of label rasters matched by scene name (as `seg tile` matches labels).",
        show_default=False,
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the report (default for one mask: <mask>_eval/; needed for many).",
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", "-k", help="With --store: predict the split's scenes, then score."
    ),
    store: str | None = typer.Option(None, "--store", help="Window store whose split to score."),
    split: str = typer.Option("test", "--split", help="The store's split to score."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Score predicted masks against truth: IoU/F1/precision/recall, boundary F1, seams, overlays.

    One mask and its truth; a folder of masks and a folder of truth (pooled: confusion matrices
    summed, a per-scene table, the worst scenes drawn); or --checkpoint + --store + --split.
    """
    from seg.errors import ConfigError

    reporter = ConsoleReporter(progress=not quiet)
    if checkpoint is not None or store is not None:
        if checkpoint is None or store is None or prediction is not None or out is None:
            raise ConfigError(
                "scoring a split takes --checkpoint CKPT --store STORE --out FOLDER (and"
                " --split, default test), without MASK/TRUTH arguments"
            )
        from seg.inference.split_eval import score_split

        pooled = score_split(checkpoint, store, split, out=out, border=border, reporter=reporter)
        typer.echo(pooled.markdown)
        typer.echo(f"wrote {', '.join(pooled.files)}")
        return
    if prediction is None or truth is None:
        raise ConfigError("give MASK TRUTH, or --checkpoint CKPT --store STORE --split test")
    from seg import fs as segfs

    if segfs.is_dir(prediction) or any(ch in prediction for ch in "*?["):
        from seg.evaluation.pooled import evaluate_many, pair_masks

        if out is None:
            raise ConfigError(
                f"scoring many masks ({prediction}) needs --out FOLDER for the report"
            )
        pooled = evaluate_many(
            pair_masks([prediction], truth), out=out, border=border, reporter=reporter
        )
        typer.echo(pooled.markdown)
        typer.echo(f"wrote {', '.join(pooled.files)}")
        return
    from seg.evaluation.evaluate import evaluate

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
