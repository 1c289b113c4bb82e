"""`seg eval`, `seg export`, `seg info` and `seg timelapse`: score masks, export a model,
describe an artifact, play a run's predictions over its epochs."""

from __future__ import annotations

import typer

from seg.cli.app import app, command
from seg.report import ConsoleReporter


@command(app, "export")
def export_command(
    checkpoint: str = typer.Argument(..., help="Checkpoint from `seg train` (local or gs://)."),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="onnx, torchscript or safetensors.", show_default=False
    ),
    out: str = typer.Option(..., "--out", "-o", help="The file to write (local or gs://)."),
) -> None:
    """Write an inference-only model: weights + what predict needs, no optimizer state."""
    from seg.inference.export import export_model

    made = export_model(checkpoint, fmt, out)
    typer.echo(f"exported: {made.format}, {made.bytes / 2**20:.1f} MB -> {made.path}")


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


@command(app, "timelapse")
def timelapse_command(
    run: str = typer.Argument(..., help="A run folder of `seg train` (local or gs://)."),
    out: str = typer.Option(..., "--out", "-o", help="run.gif or run.mp4 (local or gs://)."),
    fps: float = typer.Option(2.0, "--fps", help="Frames (epochs) per second."),
) -> None:
    """Image | truth | prediction of the fixed validation windows, one frame per epoch."""
    from seg.training.timelapse import make_timelapse

    count = make_timelapse(run, out, fps=fps, reporter=ConsoleReporter())
    typer.echo(f"timelapse: {count} frames -> {out}")
