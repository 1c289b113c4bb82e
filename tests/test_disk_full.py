"""A full disk (a small tmpfs) under tile / predict / train / eval: one line, exit 1, and
nothing half-written left there. Needs permission to mount a tmpfs (root, as in CI's
container); skipped with the reason elsewhere."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import make_checkpoint, one_line_error, write_geotiff, write_window_store

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 384 KiB tmpfs: room for the metadata, not for the data."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small tmpfs")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()[:80]}): needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def noise_scene(folder: Path, size: int = 512) -> Path:
    """Incompressible pixels: a store or mask of it cannot fit the small disk."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, size, size), np.uint8)
    write_geotiff(folder / "n_mask.tif", rng.integers(0, 2, (size, size), np.uint8))
    return write_geotiff(folder / "n.tif", image)


def fill(disk: Path, leave: int) -> None:
    """Fill the disk up to `leave` free bytes (a file that is not seg's; it must stay)."""
    import os

    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def fails_in_one_line(code: int, err: str) -> bool:
    """Exit 1, the last stderr line is seg's error, and no traceback (a training run may have
    printed its epoch lines before)."""
    lines = err.strip().splitlines()
    return (
        code == 1
        and bool(lines)
        and lines[-1].startswith("seg: error: ")
        and ("Traceback" not in err)
    )


def leftovers(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))


def test_tile_on_a_full_disk(tmp_path: Path, small_disk: Path, seg_run: Run) -> None:
    s = noise_scene(tmp_path)
    code, _, err = seg_run("tile", s, "--size", "64", "--out", small_disk / "ds.zarr", "-q")
    assert one_line_error(code, err) and "no space left" in err.lower(), err
    assert leftovers(small_disk) == []  # the store it created is rolled back


def test_predict_on_a_full_disk(tmp_path: Path, small_disk: Path, seg_run: Run) -> None:
    s = noise_scene(tmp_path)
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    out = small_disk / "masks"
    out.mkdir()
    fill(small_disk, leave=16 * 1024)
    code, _, err = seg_run("predict", s, "-k", ckpt, "--out", out, "--probabilities", "-q")
    assert one_line_error(code, err) and "no space left" in err.lower(), err
    assert leftovers(small_disk) == ["filler", "masks"]  # no mask, no temporary, no lock


def test_train_on_a_full_disk(tmp_path: Path, small_disk: Path, seg_run: Run) -> None:
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    run = small_disk / "run"
    code, _, err = seg_run(
        "train", "-c", "configs/unet_mobilenetv2.yaml", "-d", store, "--out", run,
        "--set", "train.epochs=1", "--set", "data.num_workers=0",
    )  # fmt: skip
    assert fails_in_one_line(code, err) and "no space left" in err.lower(), err
    assert not [p for p in leftovers(small_disk) if p.endswith(".pt") or ".tmp" in p]


def test_eval_on_a_full_disk_leaves_no_report_without_its_overlay(
    tmp_path: Path, small_disk: Path, seg_run: Run
) -> None:
    s = noise_scene(tmp_path)
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    mask = tmp_path / "n_pred.tif"
    assert seg_run("predict", s, "-k", ckpt, "--out", mask, "-q")[0] == 0
    fill(small_disk, leave=8 * 1024)  # room for report.json, not for the overlay too
    out = small_disk / "report"
    code, _, err = seg_run("eval", mask, tmp_path / "n_mask.tif", "--out", out)
    assert one_line_error(code, err) and "no space left" in err.lower(), err
    assert leftovers(small_disk) == ["filler"]  # all or nothing
