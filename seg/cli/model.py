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
        None,
        help="GeoTIFF scenes (PNG / JPEG with --pixel-space): files, folders, globs or gs:// URLs.",
        show_default=False,
    ),
    checkpoint: str = typer.Option(
        ...,
        "--checkpoint",
        "-k",
        help="Checkpoint from `seg train`, or an onnx/safetensors export (local or gs://).",
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
    window_size: int | None = typer.Option(
        None,
        "--window-size",
        help="Window the network runs on, a multiple of the training window (default: the"
        " training window).",
        show_default=False,
    ),
    batch_size: int = typer.Option(4, min=1, help="Windows per forward pass."),
    tta: bool = typer.Option(
        True, "--tta/--no-tta", help="Average flips and a quarter turn (4 forward passes)."
    ),
    coarse_pass: str = typer.Option(
        "auto",
        "--coarse-pass",
        help="Blend in a pass at half the network's resolution (1/3 of the weight, ~1.25x the"
        " time): auto (where its pixels stay 2 m or finer), on or off. Scenes only.",
    ),
    adapt_priors: bool = typer.Option(
        True,
        "--adapt-priors/--no-adapt-priors",
        help="Reweight to each scene's class shares, estimated by a first pass (~1.5x the time).",
    ),
    training_stats: bool = typer.Option(
        False,
        "--training-stats",
        help="Normalise each scene with the training scenes' band statistics, not its own (a"
        " `data.normalise: scene` model on scenes of the training imagery; docs/recipe.md row 82).",
    ),
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
    runtime: str = typer.Option(
        "auto", help="auto (by the model file), torch, or onnx (an export from `seg export`)."
    ),
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
        window=window_size,
        batch_size=batch_size,
        tta=tta,
        coarse_pass=coarse_pass,
        adapt_priors=adapt_priors,
        training_stats=training_stats,
        probabilities=prob_dtype if probabilities else None,
        vector=vector,
        bands=parse_bands(bands),
        device=device,
        precision=precision,
        pixel_space=pixel_space,
        overwrite=overwrite,
        runtime=runtime,
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
