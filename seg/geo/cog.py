"""Writing rasters on a scene's grid as Cloud Optimized GeoTIFFs, local or gs://.

`cog_writer` takes windows in any order into a tiled GeoTIFF in a work folder, then copies it
to a COG (with overviews) that replaces the destination atomically. A killed writer's work
folder (scene-sized) is removed by the next writer on the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetWriter

from seg import fs as segfs
from seg.errors import ResourceError
from seg.geo.raster import READ_ERRORS, SceneInfo


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
    written = False  # the caller's block is done: what fails after is this writer's own
    try:
        work = os.path.join(folder, "work.tif")
        with warnings.catch_warnings():
            # A pixel-space mask (scene without georeference) has the identity transform on
            # purpose; GDAL's warning about it would reach the user once per mask.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(work, "w", **{**profile, "driver": "GTiff"})
        with dst:
            yield dst
            written = True
        with segfs.local_copy_for_write(str(path), suffix=".tif") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            rasterio.shutil.copy(
                work,
                tmp,
                driver="COG",
                compress=profile.get("compress", "deflate"),
                blocksize=512,
                overview_resampling="nearest",
                BIGTIFF="IF_SAFER",
            )
    except READ_ERRORS as exc:
        if not written:
            raise  # the caller's (reading its input, say): it knows what it was doing
        raise write_error(str(path), exc, folder) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_error(path: str, exc: BaseException, *folders: str) -> Exception:
    """A GDAL failure while writing `path`: OSError(ENOSPC) when its folder (or one of
    `folders`) is out of space, which the CLI reports as a full disk; else one line naming it."""
    places = [*folders]
    if not segfs.is_remote(path):
        places.append(os.path.dirname(os.path.abspath(path)))
    if any(segfs.low_on_space(p) for p in places):
        return OSError(errno.ENOSPC, "No space left on device", path)
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return ResourceError(f"cannot write {path} ({reason}); check the disk and --out")


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
