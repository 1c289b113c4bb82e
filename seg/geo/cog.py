"""Writing rasters on a scene's grid as Cloud Optimized GeoTIFFs, local or gs://.

`cog_writer` takes windows in any order into a tiled GeoTIFF in a work folder, then copies it
to a COG (with overviews) that replaces the destination atomically. A killed writer's work
folder (scene-sized) is removed by the next writer on the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import rasterio
import rasterio.shutil
from rasterio.io import DatasetWriter

from seg import fs as segfs
from seg.geo.raster import SceneInfo


def output_profile(
    info: SceneInfo, count: int, dtype: str, nodata: float | None = None, **extra: Any
) -> dict[str, Any]:
    """A GeoTIFF profile on exactly the scene's grid (same size, CRS, transform)."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": count,
        "dtype": dtype,
        "transform": info.affine,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if info.crs_wkt:
        profile["crs"] = rasterio.crs.CRS.from_wkt(info.crs_wkt)
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(extra)
    return profile


@contextlib.contextmanager
def cog_writer(path: str, profile: dict[str, Any]) -> Iterator[DatasetWriter]:
    """Yield a dataset to write (by windows, in any order); on success it becomes a COG at `path`.

    The data goes to a tiled GeoTIFF in a temporary folder, then is copied to a Cloud Optimized
    GeoTIFF (with overviews) which replaces `path` atomically, local or gs://. On error nothing
    is left at `path`.
    """
    _remove_dead_work_folders()
    # Named by pid so that the next writer can tell a killed writer's folder (see below).
    folder = tempfile.mkdtemp(prefix=f"{COG_WORK}{os.getpid()}-")
    try:
        work = os.path.join(folder, "work.tif")
        with rasterio.open(work, "w", **{**profile, "driver": "GTiff"}) as dst:
            yield dst
        with segfs.local_copy_for_write(str(path), suffix=".tif") as tmp:
            rasterio.shutil.copy(
                work,
                tmp,
                driver="COG",
                compress=profile.get("compress", "deflate"),
                blocksize=512,
                overview_resampling="nearest",
                BIGTIFF="IF_SAFER",
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


COG_WORK = "seg-cog-"  # work folders of cog_writer in the system temp folder: seg-cog-<pid>-*


def _remove_dead_work_folders() -> None:
    """Remove the scene-sized work folders that killed writers (kill -9, OOM) left in the
    system temp folder: those whose pid no longer runs on this host."""
    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(COG_WORK)]
    except OSError:
        return
    for name in names:
        pid = name[len(COG_WORK) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except (PermissionError, OverflowError):
            continue
