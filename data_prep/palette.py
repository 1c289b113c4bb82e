"""Colour-coded mask images (PNG...) + a palette -> class-index mask GeoTIFFs.

The palette maps colours to classes, in class order: `"0,0,0=background;255,0,0=building"` or a
JSON/YAML file `{background: [0,0,0], building: [255,0,0]}`; class id = position. Colours not in
the palette become 255 (ignore) and are counted, or are an error with `strict`. The georeference
comes from `like` (a scene of the same size), else from the image itself (or its world file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from seg import fs as segfs
from seg.errors import InputError
from seg.geo.cog import cog_writer, output_profile
from seg.geo.raster import open_raster, scene_info

IGNORE = 255


@dataclass
class Converted:
    out: str
    classes: list[str]
    unknown_pixels: int


def parse_palette(spec: str) -> tuple[list[str], np.ndarray]:
    """Class names and their colours (k, 3) uint8, from an inline spec or a JSON/YAML file."""
    fix = "give 'r,g,b=name;r,g,b=name' or a JSON/YAML file mapping names to [r, g, b]"
    if "=" in spec:
        pairs: list[tuple[str, Any]] = []
        for part in spec.split(";"):
            colour, _, name = part.partition("=")
            pairs.append((name.strip(), colour.split(",")))
    else:
        try:
            data = yaml.safe_load(segfs.read_bytes(spec))  # JSON is YAML too
        except FileNotFoundError as exc:
            raise InputError(f"palette file {spec} does not exist") from exc
        except (IsADirectoryError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0][:120]
            raise InputError(f"palette file {spec} is not JSON or YAML ({reason}); {fix}") from exc
        if not isinstance(data, dict):
            raise InputError(f"palette file {spec} must map class names to [r, g, b]")
        pairs = [(str(k), v) for k, v in data.items()]
    try:
        colours = [[int(str(v).strip()) for v in c] for _, c in pairs]
    except (TypeError, ValueError):
        colours = []
    if not pairs or len(colours) != len(pairs):
        raise InputError(f"palette {spec!r}: colours must be whole numbers r,g,b; {fix}")
    if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colours):
        raise InputError(f"palette {spec!r}: every class needs an r,g,b colour in 0..255")
    if any(not name for name, _ in pairs):
        raise InputError(f"palette {spec!r}: every colour needs a class name; {fix}")
    if len(pairs) >= IGNORE:
        raise InputError("a palette has at most 254 classes")
    return [n for n, _ in pairs], np.array(colours, np.uint8)


def convert(
    src: str, out: str, palette: str, like: str | None = None, strict: bool = False
) -> Converted:
    names, colours = parse_palette(palette)
    with open_raster(src) as ds:
        if ds.count < 3:
            raise InputError(f"{src} has {ds.count} band(s); a colour-coded mask needs RGB")
        rgb = ds.read([1, 2, 3])  # (3, H, W); mask images are small enough to read whole
        info = scene_info(ds, src, pixel_space=True)
    if like:
        with open_raster(like) as ref:
            if (ref.width, ref.height) != (info.width, info.height):
                raise InputError(
                    f"{src} is {info.width}x{info.height} but {like} is {ref.width}x{ref.height};"
                    " the mask must cover the scene pixel for pixel"
                )
            info = scene_info(ref, like)
    # Pack colours into one integer per pixel, then look each one up in the palette.
    packed = (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2]  # (H, W)
    keys = (
        (colours[:, 0].astype(np.uint32) << 16)
        | (colours[:, 1].astype(np.uint32) << 8)
        | colours[:, 2]
    )
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
    hit = keys[order][pos] == packed
    classes = np.where(hit, order[pos], IGNORE).astype(np.uint8)
    unknown = int((~hit).sum())
    if unknown and strict:
        bad = np.unique(packed[~hit])[:5]
        shown = ", ".join(f"({v >> 16},{(v >> 8) & 255},{v & 255})" for v in bad)
        raise InputError(f"{src}: {unknown} pixels have colours not in the palette, e.g. {shown}")
    profile = output_profile(info, 1, "uint8", nodata=IGNORE)
    if info.pixel_space:
        profile.pop("crs", None)
    with cog_writer(out, profile) as dst:
        dst.write(classes[None])
        dst.update_tags(CLASSES=json.dumps(names))
    return Converted(out, names, unknown)
