"""The `seg` command line: parse, call one library function, report.

No logic lives here. A `SegError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from seg.errors import SegError  # noqa: E402

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


def shard_default(name: str) -> int | None:
    """Cloud Batch array jobs set BATCH_TASK_INDEX/BATCH_TASK_COUNT; use them as defaults."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


# --- commands are added below, one function per command, each calling one library function ---

@app.command("tile")
def tile_command(
    scenes: list[str] = typer.Argument(
        ..., help="GeoTIFF scenes: files, folders, globs or gs:// URLs (many at once).", show_default=False
    ),
    out: str = typer.Option(..., "--out", "-o", help="Window store to create or add to (local or gs://)."),
    labels: str | None = typer.Option(
        None,
        "--labels",
        "-l",
        help="Label rasters (a folder matched by scene name, or one file for one scene) or a vector"
        " file (GeoJSON, GeoPackage) rasterized on each scene's grid. Omit for unlabelled scenes.",
    ),
    size: int | None = typer.Option(None, help="Window size in pixels, a multiple of 32 [config: 512]."),
    stride: int | None = typer.Option(None, help="Step between windows; 256 with size 512 = 50% overlap [512]."),
    bands: str | None = typer.Option(None, help="1-based bands to keep, e.g. 1,2,3 [all but alpha]."),
    label_attr: str | None = typer.Option(None, help="Vector attribute holding class ids or names [class 1]."),
    label_crs: str | None = typer.Option(
        None, help="CRS of a vector file without one, or 'scene' for the scene's own [EPSG:4326]."
    ),
    label_buffer: float | None = typer.Option(None, help="Grow vector labels by metres (roads) [0]."),
    max_nodata: float | None = typer.Option(None, help="Skip windows with more nodata than this fraction [0.5]."),
    allow_gaps: bool = typer.Option(False, "--allow-gaps", help="Allow stride > size (gaps)."),
    pixel_space: bool = typer.Option(
        False, "--pixel-space", help="Tile rasters without a georeference (e.g. GCPs only) in pixel coordinates."
    ),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML with tile settings (configs/tile.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set splits.seed=1."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the store over instead of resuming."),
    shard_index: int | None = typer.Option(
        None, help="This machine's share of the scenes [$BATCH_TASK_INDEX].", show_default=False
    ),
    shard_count: int | None = typer.Option(
        None, help="How many machines share the scenes [$BATCH_TASK_COUNT].", show_default=False
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Cut scenes (and their labels) into windows in a zarr store, for `seg train`.

    Resumable: re-running skips finished scenes. Example:
    seg tile scenes/ --labels masks/ --out gs://bucket/ds.zarr --size 512 --stride 256
    """
    from seg.config import TileConfig, load_config
    from seg.tile import tile_scenes

    flags = {
        "size": size, "stride": stride, "label_attr": label_attr, "label_crs": label_crs,
        "label_buffer": label_buffer, "max_nodata": max_nodata, "allow_gaps": allow_gaps or None, "pixel_space": pixel_space or None,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if bands:
        overrides.append(f"bands=[{bands}]")
    cfg = load_config(TileConfig, config, overrides + list(set_))
    summary = tile_scenes(
        scenes,
        out,
        cfg,
        labels=labels,
        overwrite=overwrite,
        shard_index=shard_index if shard_index is not None else shard_default("BATCH_TASK_INDEX"),
        shard_count=shard_count if shard_count is not None else shard_default("BATCH_TASK_COUNT"),
        progress=not quiet,
    )
    typer.echo(f"tiled: {summary.line()}")


@app.command("sample")
def sample_command(
    out_dir: str = typer.Argument(..., help="Folder to write the sample scenes into (local or gs://)."),
    scenes: int = typer.Option(3, min=1, help="How many scenes."),
    size: int = typer.Option(512, min=64, help="Approximate scene size in pixels."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
) -> None:
    """Write a small synthetic labelled data set (GeoTIFF scenes, masks, GeoJSON) to try seg on."""
    from seg.sample import write_sample

    made = write_sample(out_dir, scenes=scenes, size=size, seed=seed)
    typer.echo(f"wrote {len(made.scenes)} scenes with masks and {made.geojson} in {out_dir}")
    typer.echo(f"next: seg tile {out_dir} --labels {out_dir} --out dataset.zarr")



def main() -> None:
    try:
        app()
    except SegError as exc:
        print(f"seg: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("seg: interrupted", file=sys.stderr)
        sys.exit(130)
