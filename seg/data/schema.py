"""The window store's on-disk schema in one place: its format marker, its codecs, and the
per-scene attributes (`SceneAttrs`) that `seg tile` writes and everything else reads.

Layout and codecs are described in `seg.data.store`; this module holds the values only, so the
writer (`seg.data.scene_writer`) and the reader (`seg.data.store`) share them without importing
each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from seg.data.bandstats import BandStats
from seg.errors import StoreError
from seg.geo.raster import SceneInfo

FORMAT = "seg-window-store/1"
# Why these: see the module docstring (read speed for the loader; masks still ~1% of raw).
IMAGE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle)
MASK_CODEC = BloscCodec(cname="lz4hc", clevel=5, shuffle=BloscShuffle.shuffle)
# After compression, every window's chunk carries a CRC32C of its bytes: a flipped bit is an
# error naming the window, never a silently wrong window (`seg check STORE` reads them all).
CHECKSUM = Crc32cCodec()


def _json_safe(x: float | None) -> float | str | None:
    """JSON has no NaN/inf: such a nodata value is kept as its string."""
    return x if x is None or math.isfinite(x) else str(x)


@dataclass(frozen=True)
class SceneAttrs:
    """The per-scene schema (`attrs["scene"]`), written and read here only."""

    source: str
    crs: str | None  # WKT; None for pixel-space scenes
    transform: tuple[float, ...]  # 6 floats, GDAL order a, b, c, d, e, f
    width: int
    height: int
    nodata: float | str | None
    dtype: str
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    pixel_space: bool
    band_stats: BandStats = field(compare=False)
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    labels: str | None = None
    split: str | None = None
    skipped_windows: int = 0
    n_windows: int = 0
    # A scene split inside itself (splits.blocks): split -> its window numbers; {} otherwise.
    window_splits: dict[str, list[int]] = field(default_factory=dict, compare=False)

    @classmethod
    def of_scene(
        cls,
        info: SceneInfo,
        stats: BandStats,
        *,
        labels: str | None,
        split: str | None,
        skipped: int,
    ) -> SceneAttrs:
        return cls(
            source=info.path,
            crs=info.crs_wkt,
            transform=tuple(info.transform),
            width=info.width,
            height=info.height,
            nodata=_json_safe(info.nodata),
            dtype=info.dtype,
            bands=tuple(info.bands),
            band_names=tuple(info.band_names),
            pixel_space=info.pixel_space,
            band_stats=stats,
            tags=dict(info.tags),
            metadata=dict(info.metadata),
            labels=labels,
            split=split,
            skipped_windows=skipped,
        )

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["transform"], out["bands"] = list(self.transform), list(self.bands)
        out["band_names"], out["band_stats"] = list(self.band_names), self.band_stats.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SceneAttrs:
        try:
            return cls(
                source=str(d.get("source") or ""),
                crs=d.get("crs"),
                transform=tuple(float(x) for x in d["transform"][:6]),
                width=int(d["width"]),
                height=int(d["height"]),
                nodata=d.get("nodata"),
                dtype=str(d.get("dtype", "uint8")),
                bands=tuple(int(b) for b in d.get("bands") or []),
                band_names=tuple(str(b) for b in d.get("band_names") or []),
                pixel_space=bool(d.get("pixel_space", False)),
                band_stats=BandStats.from_json(d["band_stats"]),
                tags=dict(d.get("tags") or {}),
                metadata=dict(d.get("metadata") or {}),
                labels=d.get("labels"),
                split=d.get("split"),
                skipped_windows=int(d.get("skipped_windows", 0)),
                n_windows=int(d.get("n_windows", 0)),
                window_splits={
                    str(k): [int(i) for i in v] for k, v in (d.get("window_splits") or {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"a scene's attributes are damaged ({exc}); re-tile it") from exc

    def scene_info(self, scene_id: str) -> SceneInfo:
        """The scene's grid as `seg.geo.raster` describes a raster (for writing its masks)."""
        from rasterio.crs import CRS

        return SceneInfo(
            path=self.source or scene_id,
            width=self.width,
            height=self.height,
            count=len(self.bands),
            dtype=self.dtype,
            crs_wkt=CRS.from_user_input(self.crs).to_wkt() if self.crs else None,
            transform=self.transform,
            nodata=None,
            bands=list(self.bands),
            band_names=list(self.band_names),
            all_valid=False,
            pixel_space=self.pixel_space,
        )
