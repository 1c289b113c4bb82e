"""gs:// scenes, labels and stores through a real GCS emulator (fake-gcs-server on 127.0.0.1)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg import fs as segfs
from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


def test_tile_from_and_to_gcs_equals_local(
    tmp_path: Path, make_scene, seg_run: Run, gcs_bucket: str
) -> None:
    folder = tmp_path / "in"
    for i in range(2):
        make_scene(f"g{i}_image", 96, 80, seed=i, folder=folder)
    (folder / "g0_image.json").write_text('{"sensor": "test"}')
    fs, _ = segfs.filesystem(gcs_bucket)
    remote = f"{gcs_bucket}/scenes"
    for p in folder.iterdir():
        fs.put_file(str(p), f"{remote}/{p.name}".removeprefix("gs://"))
    store = f"{gcs_bucket}/ds.zarr"
    code, out, err = seg_run(
        "tile", remote, "--labels", remote, "--out", store, "--size", "64", "-q"
    )
    assert code == 0, err
    assert "2 scenes (2 tiled" in out
    local = tmp_path / "local.zarr"
    assert (
        seg_run(
            "tile",
            f"{folder}/*_image.tif",
            "--labels",
            folder,
            "--out",
            local,
            "--size",
            "64",
            "-q",
        )[0]
        == 0
    )
    a, b = WindowStore.open(store), WindowStore.open(str(local))
    assert a.scene_ids() == b.scene_ids() == ["g0_image", "g1_image"]
    assert a.splits == b.splits
    for x, y in zip(a.scenes(), b.scenes(), strict=True):
        np.testing.assert_array_equal(x.image[:], y.image[:])
        np.testing.assert_array_equal(x.mask[:], y.mask[:])
        assert x.attrs.source.startswith("gs://")
    assert a.scene("g0_image").attrs.metadata == {"sensor": "test"}
    # Resuming against the bucket skips the finished scenes.
    code, out, _ = seg_run("tile", remote, "--labels", remote, "--out", store, "--size", "64", "-q")
    assert code == 0 and "(0 tiled, 2 already done)" in out


def test_missing_bucket_is_one_line(tmp_path: Path, make_scene, gcs_bucket: str) -> None:
    """A bucket the emulator does not have (a typo in the name) fails in one line, exit 1."""
    scene, _ = make_scene("u", 64, 64)
    cmd = [
        sys.executable,
        "-m",
        "seg",
        "tile",
        str(scene),
        "--out",
        "gs://no-such-bucket/x.zarr",
        "-q",
        "--size",
        "64",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "seg: error: bucket gs://no-such-bucket does not exist"
    ), proc.stderr
    assert "credentials" in lines[0]
