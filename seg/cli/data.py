"""`seg tile`, `seg check` and `seg sample`: scenes into a window store, a store read back for
damage, and a sample to try it on."""

from __future__ import annotations

import typer

from seg.cli.app import app, command
from seg.report import ConsoleReporter


@command(app, "tile")
def tile_command(
    scenes: list[str] = typer.Argument(
        ...,
        help="GeoTIFF scenes (PNG / JPEG with --pixel-space): files, folders, globs or gs:// URLs.",
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
    from seg.data.tile import tile_scenes
    from seg.shards import Shard
    from seg.tile_config import tile_config

    cfg = tile_config(
        config,
        list(set_),
        size=size,
        stride=stride,
        bands=bands,
        label_attr=label_attr,
        label_crs=label_crs,
        label_buffer=label_buffer,
        max_nodata=max_nodata,
        allow_gaps=allow_gaps,
        pixel_space=pixel_space,
    )
    summary = tile_scenes(
        scenes,
        out,
        cfg,
        labels=labels,
        overwrite=overwrite,
        shard=Shard.of(shard_index, shard_count),
        reporter=ConsoleReporter(progress=not quiet),
    )
    typer.echo(f"tiled: {summary.line()}")


@command(app, "check")
def check_command(
    store: str = typer.Argument(..., help="Window store to verify (local or gs://)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Read every window of a store back (checksums, decoding); name the damaged ones."""
    from seg.data.integrity import check_store
    from seg.errors import StoreError

    report = check_store(store, reporter=ConsoleReporter(progress=not quiet))
    for damage in report.damaged[:20]:
        typer.echo(f"damaged: {damage}")
    if len(report.damaged) > 20:
        typer.echo(f"damaged: ... and {len(report.damaged) - 20} more")
    if report.unfinished:
        typer.echo(f"unfinished (a stopped seg tile; re-run it): {report.unfinished}")
    if not report.checksummed:
        typer.echo(
            "note: this store was written without per-window checksums (before seg wrote them):"
            " a flipped byte inside a window may decode silently; re-tile to add them"
        )
    if not report.ok:
        scenes = report.damaged_scenes()
        raise StoreError(
            f"{len(report.damaged)} damaged window(s) in scene(s) {scenes} of {store}; re-tile"
            " them (seg tile SCENE ... --out STORE --overwrite)"
        )
    typer.echo(f"checked: {report.scenes} scenes, {report.windows} windows, all readable")


@command(app, "sample")
def sample_command(
    out_dir: str = typer.Argument(
        ..., help="Folder to write the sample scenes into (local or gs://)."
    ),
    scenes: int = typer.Option(3, min=1, help="How many scenes."),
    size: int = typer.Option(512, min=64, help="Approximate scene size in pixels."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
) -> None:
    """Write a small synthetic labelled data set (GeoTIFF scenes, masks, GeoJSON) to try seg on."""
    from seg.data.synthetic import write_sample

    made = write_sample(out_dir, scenes=scenes, size=size, seed=seed)
    typer.echo(f"wrote {len(made.scenes)} scenes with masks and {made.geojson} in {out_dir}")
    typer.echo(f"next: seg tile {out_dir} --labels {out_dir} --out dataset.zarr")
