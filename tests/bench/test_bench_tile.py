"""bench/tile.py --quick runs and reports its side-by-side figures (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_tile_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tile.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "windows in" in line]
    assert len(lines) == 2
    for line in lines:
        assert re.search(r"ratio \d+\.\d\d", line) and "windows/s" in line and "MB/s" in line
        zarr_objects, tif_objects = map(int, re.search(r"objects (\d+) vs (\d+)", line).groups())
        assert (
            zarr_objects < tif_objects
        )  # whole shards: far fewer objects than one file per window
        assert re.search(r"peak memory while tiling \+\d+ MB", line)
    # The store it wrote is a valid seg store with every window of the tall scene.
    from seg.data.store import WindowStore

    (scene,) = WindowStore.open(str(tmp_path / "tall1.zarr")).scenes()
    assert len(scene) == 36 and scene.mask is not None
