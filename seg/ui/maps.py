"""The map pages of `seg ui`: every mask under --predictions, and one mask on a slippy map
(vendored Leaflet) with its scene, the mask and each class's probability as XYZ tiles
(seg.ui.tiles), beside the scene's `seg eval` report."""

from __future__ import annotations

import asyncio
import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from seg import fs as segfs
from seg.classes import colour
from seg.inference.outputs import MASK_SUFFIX
from seg.ui.roots import Refused
from seg.ui.state import page, ui_of
from seg.ui.tiles import layer_path, map_source, tile_png

MAX_DEPTH = 3  # folders below --predictions searched for masks


def list_masks(root: str) -> list[str]:
    """Masks (`*_mask.tif`) under `root`, as paths relative to it."""
    fs, base = segfs.filesystem(root)
    base = base.rstrip("/")
    found = fs.find(base, maxdepth=MAX_DEPTH)
    return sorted(p[len(base) + 1 :] for p in found if p.endswith(MASK_SUFFIX))


async def maps_page(request: Request) -> Response:
    root = ui_of(request).roots.predictions
    masks = await asyncio.to_thread(list_masks, root) if root else []
    return page(request, "maps.html", masks=masks, predictions=root)


async def map_page(request: Request) -> Response:
    ui = ui_of(request)
    name = request.path_params["name"]
    path = ui.roots.mask(name)
    if not segfs.exists(path):
        raise Refused(f"no mask {name!r} under {ui.roots.predictions}")
    source = await asyncio.to_thread(map_source, path, ui.roots.serves)
    colours = [colour(i) for i in range(len(source.classes))]
    return page(request, "map.html", name=name, source=dataclasses.asdict(source), colours=colours)


async def tile(request: Request) -> Response:
    """GET /tiles/LAYER/Z/X/Y/MASK[?band=K]: a PNG, or 204 where the tile holds no pixel."""
    ui = ui_of(request)
    p = request.path_params
    mask = ui.roots.mask(p["name"])
    if not segfs.exists(mask):
        raise Refused(f"no mask {p['name']!r} under {ui.roots.predictions}")
    layer = p["layer"]
    path = await asyncio.to_thread(layer_path, mask, layer, ui.roots.serves)
    if path is None:
        raise Refused(f"{p['name']} has no {layer} layer to serve")
    band = int(request.query_params.get("band", "1"))
    png = await asyncio.to_thread(tile_png, path, layer, (p["z"], p["x"], p["y"]), band=band)
    if png is None:
        return Response(status_code=204)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=60"})
