"""`python -m data_prep CONVERTER ...`: turn public label formats into what `seg tile` takes."""

from __future__ import annotations

import sys

import typer

from seg.errors import SegError

app = typer.Typer(
    name="data_prep",
    help="Convert common label formats into scenes + labels for `seg tile`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("xview2")
def xview2_command(
    labels: list[str] = typer.Argument(..., help="xView2 label JSON files."),
    out: str = typer.Option(..., "--out", "-o", help="Folder for the GeoJSON and metadata files."),
    coords: str = typer.Option(
        "lng_lat",
        help="lng_lat (georeferenced) or xy (pixels: tile with --pixel-space --label-crs scene).",
    ),
    scheme: str = typer.Option(
        "building", help="building (class 1) or damage (classes 1-5 by subtype)."
    ),
) -> None:
    """xView2 JSON (WKT polygons in lng/lat and pixels, metadata) -> GeoJSON + metadata JSON."""
    from data_prep.xview2 import convert

    for path in labels:
        made = convert(path, out, coords=coords, scheme=scheme)
        typer.echo(f"{path} -> {made.geojson} ({made.features} features), {made.metadata}")
    typer.echo(f"classes: {made.classes}; use --label-attr class_id --set 'classes={made.classes}'")


@app.command("spacenet")
def spacenet_command(
    src: str = typer.Argument(..., help="SpaceNet GeoJSON."),
    out: str = typer.Option(
        ..., "--out", "-o", help="GeoJSON to write (with a class_id attribute)."
    ),
    attr: str | None = typer.Option(
        None, help="Integer attribute to use as class id (e.g. road_type)."
    ),
    class_id: int = typer.Option(1, help="Class id of every feature when --attr is not given."),
    mask_for: str | None = typer.Option(None, help="Also write OUT_mask.tif on this scene's grid."),
    buffer: float = typer.Option(
        0.0, help="Grow lines/points by metres for the mask (roads: 2 = 4 m wide)."
    ),
) -> None:
    """SpaceNet GeoJSON -> class-attributed GeoJSON (and a mask GeoTIFF on a scene's grid)."""
    from data_prep.spacenet import convert

    made = convert(src, out, attr=attr, class_id=class_id, mask_for=mask_for, buffer_m=buffer)
    typer.echo(f"{src} -> {made.geojson}: {made.features} features ({made.dropped} empty dropped)")
    if made.mask:
        typer.echo(f"mask: {made.mask}")


@app.command("palette")
def palette_command(
    src: str = typer.Argument(..., help="Colour-coded mask image (PNG, TIFF...)."),
    out: str = typer.Option(..., "--out", "-o", help="Class-index mask GeoTIFF to write."),
    palette: str = typer.Option(
        ..., help="'0,0,0=background;255,0,0=building' or a JSON/YAML file."
    ),
    like: str | None = typer.Option(
        None, help="Scene whose georeference the mask takes (same size)."
    ),
    strict: bool = typer.Option(
        False, help="Colours not in the palette are an error (default: 255)."
    ),
) -> None:
    """Colour-coded mask PNG + palette -> class-index mask GeoTIFF (255 = ignore)."""
    from data_prep.palette import convert

    made = convert(src, out, palette, like=like, strict=strict)
    typer.echo(
        f"{src} -> {out}: classes {made.classes}, {made.unknown_pixels} pixels of unknown"
        " colour -> 255"
    )


@app.command("webtiles")
def webtiles_command(
    folder: str = typer.Argument(..., help="Folder of web-map chips."),
    out: str = typer.Option(..., "--out", "-o", help="Mosaic GeoTIFF (EPSG:3857) to write."),
    pattern: str = typer.Option("{z}/{x}/{y}.png", help="Chip names, e.g. 'OAM-{x}-{y}-{z}.png'."),
    zoom: int | None = typer.Option(
        None, help="Zoom to use when chips of several zooms are present."
    ),
) -> None:
    """Web-map z/x/y chips -> one georeferenced EPSG:3857 GeoTIFF (missing chips = nodata)."""
    from data_prep.webtiles import mosaic

    made = mosaic(folder, out, pattern=pattern, zoom=zoom)
    typer.echo(f"{made.chips} chips at zoom {made.zoom} -> {out} ({made.width}x{made.height})")


def main() -> None:
    try:
        app()
    except SegError as exc:
        print(f"data_prep: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
