"""Killing `seg tile` (SIGKILL) after the first scene and re-running gives the same store as a
run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_pair, write_geotiff

from seg.data.store import WindowStore


def _done(store: Path, scene: str) -> bool:
    meta = store / scene / "zarr.json"
    try:
        return bool(json.loads(meta.read_text()).get("attributes", {}).get("done"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def _snapshot(path: Path) -> dict:
    store = WindowStore.open(str(path))
    out: dict = {"settings": store.settings}
    for s in store.scenes():
        out[s.scene_id] = (s.attrs, s.image[:], s.mask[:], s.windows)
    return out


@pytest.mark.slow
def test_kill_mid_run_then_rerun_equals_clean_run(tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, (h, w) in enumerate([(64, 64), (640, 640), (96, 64)]):
        image, mask = synthetic_pair(h, w, seed=i)
        write_geotiff(folder / f"k{i}.tif", image)
        write_geotiff(folder / f"k{i}_mask.tif", mask)
    cmd = [
        sys.executable,
        "-m",
        "seg",
        "tile",
        str(folder),
        "--labels",
        str(folder),
        "--size",
        "32",
        "-q",
    ]
    env = dict(os.environ)
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    subprocess.run([*cmd, "--out", str(clean)], check=True, env=env, capture_output=True)

    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _done(killed, "k0") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "seg tile finished before it could be killed"
    assert _done(killed, "k0") and not _done(killed, "k1")  # killed inside the big scene
    assert WindowStore.open(str(killed)).scene_ids() == ["k0"]

    rerun = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "(2 tiled, 1 already done)" in rerun.stdout
    a, b = _snapshot(clean), _snapshot(killed)
    assert a.keys() == b.keys() == {"settings", "k0", "k1", "k2"}
    assert a["settings"] == b["settings"]
    for k in ("k0", "k1", "k2"):
        assert a[k][0] == b[k][0]
        for x, y in zip(a[k][1:], b[k][1:], strict=True):
            np.testing.assert_array_equal(x, y)
