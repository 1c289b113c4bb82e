"""bench/quality.py --quick runs the hand-written loop and seg's CLI side by side and prints,
per set, both mIoUs, the seam figures, steps and windows, and seg minus loop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_helpers import ROOT, env


def bench(
    *args: str | Path, cwd: Path = ROOT, timeout: int = 600, tmp: Path | None = None
) -> subprocess.CompletedProcess:
    """Run bench/quality.py with `args` as the README does; its output as text. `tmp`: its
    TMPDIR, where it makes its work folder when given no --work."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env={**env(), "TMPDIR": str(tmp)} if tmp else env(),
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.slow
def test_bench_quality_quick(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    # the loop as it runs where bf16 is emulated (seg's precision auto: fp32)
    res = bench(
        "--quick", "--sets", "a", "--work", tmp_path, "--json", out, "--loop-precision", "fp32"
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert re.search(r"^loop\s+mIoU \d\.\d{4} .*steps \d+", res.stdout, re.M), res.stdout
    assert re.search(r"^seg\s+mIoU \d\.\d{4} .*steps \d+", res.stdout, re.M), res.stdout
    assert re.search(r"^seg - loop: mIoU [+-]\d\.\d{4}", res.stdout, re.M), res.stdout
    # the seam gap beside the loop's on the same band (the band's ground, not a seam)
    seams = r"^seams on seg's band, border - interior: seg [+-]\d\.\d{4}, the loop's masks [+-]\d"
    assert re.search(seams, res.stdout, re.M), res.stdout
    # the seam test proper: the checkpoint windowed and in one pass over the whole scene
    assert re.search(r"^seam test .*what the seams cost: [+-]\d\.\d{4}$", res.stdout, re.M)
    ref = json.loads(out.read_text())["a"]["seg"]["seam_reference"]
    assert set(ref) >= {"windowed", "whole", "seam_cost"}
    assert json.loads(out.read_text())["loop_precision"] == "fp32"
    data = json.loads(out.read_text())["a"]
    for who in ("loop", "seg"):
        assert 0.0 <= data[who]["miou"] <= 1.0 and data[who]["steps"] > 0
        assert data[who]["windows_seen"] > 0
    band = data["seg"]["loop_on_seg_band"]
    assert 0.0 <= band["border_miou"] <= 1.0 and 0.0 <= band["interior_miou"] <= 1.0
    # seg's training time is accounted for part by part (seg.training.budget).
    assert set(data["seg"]["budget_spent"]) >= {"train", "data", "validation", "checkpoints"}


def test_an_unknown_set_is_refused_naming_the_sets(tmp_path: Path) -> None:
    (tmp := tmp_path / "tmp").mkdir()
    res = bench("--sets", "kampala,paris", cwd=tmp_path, timeout=120, tmp=tmp)
    assert res.returncode == 2
    assert not list(tmp.glob("seg-quality-*"))  # refused before its work folder was made
    assert (
        "unknown set(s) paris; choose from kampala, vegas, atlanta, kampala_blocks, naip"
        in res.stderr
    )


def test_tile_overrides_reach_seg_tile(tmp_path: Path) -> None:
    """`--tile-set` goes to `seg tile` (not to `seg train`): a key tile does not know fails there,
    named in seg tile's own words."""
    quick_seg = ("--quick", "--sets", "a", "--only", "seg", "--work", tmp_path)
    res = bench(*quick_seg, "--tile-set", "splits.nope=1", timeout=300)
    assert res.returncode != 0
    assert res.stderr.startswith("seg tile ") and "splits.nope" in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        # the many-scene set: four training quadrants and six test blocks
        (
            "kampala_blocks",
            (
                ("train", "kampala_z21_1024x1024", 512, 4),
                ("test", "kampala_z21_3072x2048", 1024, 6),
            ),
        ),
        # kampala the other way round: the large scene as six training blocks
        (
            "kampala_wide",
            (
                ("train", "kampala_z21_3072x2048", 1024, 6),
                ("test", "kampala_z21_1024x1024", 1024, 1),
            ),
        ),
    ],
)
def test_kampala_sets_cut_scenes_into_georeferenced_scenes(
    tmp_path: Path, name: str, layout: tuple[tuple[str, str, int, int], ...]
) -> None:
    """Each block on the grid of the scene it was cut from, with its mask on the same grid and
    the same pixels as that place; the blocks tile the scene."""
    shared = ROOT.parent / "shared" / "data" / "kampala"
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent (the real rasters live beside the repository)")
    import rasterio

    sys.path.insert(0, str(ROOT / "bench"))
    from quality import data_sets

    parts = data_sets([name], quick=False, work=tmp_path)[name]
    for part, stem, side, count in layout:
        assert len(parts[part]) == count
        with (
            rasterio.open(shared / f"{stem}_image.tif") as whole,
            rasterio.open(shared / f"{stem}_buildings_mask.tif") as whole_mask,
        ):
            full, full_mask = whole.read(), whole_mask.read()
            corners = set()
            for scene, mask in parts[part]:
                with rasterio.open(scene) as s, rasterio.open(mask) as m:
                    assert s.shape == m.shape == (side, side)
                    assert s.transform == m.transform and s.crs == whole.crs
                    # the block's pixels are the whole scene's at the place its transform names
                    col, row = (round(v) for v in ~whole.transform * (s.transform.c, s.transform.f))
                    corners.add((row, col))
                    where = (slice(None), slice(row, row + side), slice(col, col + side))
                    np.testing.assert_array_equal(s.read(), full[where])
                    np.testing.assert_array_equal(m.read(), full_mask[where])
            # the blocks tile the whole scene: no block repeated, none left out
            assert len(corners) == len(parts[part])
            assert len(corners) * side * side == full.shape[1] * full.shape[2]


def test_naip_is_rgb_with_three_classes_from_the_nir_band_it_drops(tmp_path: Path) -> None:
    """The multi-class set: the scene's RGB bands (not its NIR) on its own grid, split by
    columns, and a mask of bare ground / vegetation / water read off the NIR band."""
    source = ROOT.parent / "shared" / "data" / "rasters" / "naip_rgbn_4band.tif"
    if not source.is_file():
        pytest.skip(f"{source} is absent (the real rasters live beside the repository)")
    import rasterio

    sys.path.insert(0, str(ROOT / "bench"))
    from quality import CLASS_NAMES, data_sets

    parts = data_sets(["naip"], quick=False, work=tmp_path)["naip"]
    with rasterio.open(source) as whole:
        rgbn = whole.read()
    widths = []
    for part in ("train", "test"):
        [(scene, mask)] = parts[part]
        with rasterio.open(scene) as s, rasterio.open(mask) as m:
            assert s.count == 3 and m.count == 1 and s.transform == m.transform
            col = round((~whole.transform * (s.transform.c, s.transform.f))[0])
            np.testing.assert_array_equal(s.read(), rgbn[:3, :, col : col + s.width])
            label, nir = m.read(1), rgbn[3, :, col : col + s.width]
            shares = np.bincount(label.ravel(), minlength=4) / label.size
            assert shares[3] == 0 and (shares[:3] > 0.1).all()  # three classes, each common
            assert (nir[label == 2] < nir[label != 2].min()).all()  # water: the darkest NIR
            widths.append(s.width)
    assert widths == [600, 334] and len(CLASS_NAMES["naip"]) == 3
