"""A picture a person can check at a glance: image | truth | prediction, side by side (PNG).

Every panel is read decimated (the mask COG's overviews make that cheap), so a scene of any size
becomes a PNG at most `max_side` pixels tall.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from seg.classes import colour_mask
from seg.geo.labels import SceneLabels, VectorLabels
from seg.geo.raster import SceneInfo, open_raster

NODATA_GREY = (60, 60, 60)
TITLE = 18  # pixels above each panel for its title


def colourise(classes: np.ndarray) -> np.ndarray:
    """(h, w) class ids -> (h, w, 3) uint8; 255 (no data / ignore) is grey."""
    return colour_mask(classes, ignore=NODATA_GREY)


def stretch(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(C, h, w) any dtype -> (h, w, 3) uint8 with a 2-98 % stretch per band over valid pixels."""
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    out = np.zeros((*bands.shape[1:], 3), np.uint8)
    for i, b in enumerate(bands.astype(np.float64)):
        vals = b[valid] if valid.any() else b.ravel()
        lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
        out[..., i] = np.clip((b - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    out[~valid] = NODATA_GREY
    return out


def small_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    # Large scenes shrink to max_side; tiny ones grow (at most 4x) so a person can see them.
    scale = min(4.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def read_small(path: str, shape: tuple[int, int], band: int | None = 1) -> np.ndarray:
    """A raster read at `shape` (nearest: class ids stay class ids); all bands if band is None."""
    with open_raster(path) as ds:
        if band is None:
            return ds.read(out_shape=(ds.count, *shape), resampling=Resampling.nearest)
        return ds.read(band, out_shape=shape, resampling=Resampling.nearest)


def truth_small(info: SceneInfo, truth: str | VectorLabels, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(truth, VectorLabels):
        h, w = shape
        t = info.affine @ Affine.scale(info.width / w, info.height / h)
        small = replace(info, width=w, height=h, transform=tuple(t)[:6])
        return SceneLabels(small, truth).strip(0, h)
    with open_raster(truth) as ds:
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        valid = ds.read_masks(1, out_shape=shape, resampling=Resampling.nearest) > 0
    return np.where(valid, data, 255).astype(np.uint8)


def overlay_png(
    info: SceneInfo,
    prediction: str,
    truth: str | VectorLabels,
    image: str | None,
    *,
    max_side: int = 512,
) -> bytes:
    """PNG bytes of image | truth | prediction (the image panel only when `image` is given)."""
    shape = small_shape(info.height, info.width, max_side)
    panels: list[tuple[str, np.ndarray]] = []
    if image is not None:
        with open_raster(image) as ds:
            pixels = ds.read(out_shape=(ds.count, *shape), resampling=Resampling.average)
            valid = ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        panels.append(("image", stretch(pixels, valid)))
    panels.append(("truth", colourise(truth_small(info, truth, shape))))
    panels.append(("prediction", colourise(read_small(prediction, shape).astype(np.uint8))))
    h, w = shape
    gap = 6
    canvas = Image.new("RGB", (len(panels) * (w + gap) - gap, h + TITLE), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, rgb) in enumerate(panels):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(rgb, "RGB"), (x, TITLE))
        draw.text((x + 2, 2), title, fill=(0, 0, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
