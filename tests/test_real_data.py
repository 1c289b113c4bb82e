"""Real scenes from ../shared/data: labels from GeoJSON and from mask rasters give the same masks,
and every raster of the robustness set is tiled or refused in one clear line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from seg.data.store import WindowStore

Run = Callable[..., tuple[int, str, str]]


def _masks(path: Path) -> dict[str, np.ndarray]:
    return {s.scene_id: s.mask[:] for s in WindowStore.open(str(path)).scenes()}


def _compare(
    tmp_path: Path,
    seg_run: Run,
    scenes: list[Path],
    vector: Path,
    rasters: list[Path] | Path,
    *flags: str,
) -> float:
    """Tile with the vector labels and with the mask rasters; the fraction of pixels that differ."""
    a, b = tmp_path / "vector.zarr", tmp_path / "raster.zarr"
    code, _, err = seg_run("tile", *scenes, "--labels", vector, "--out", a, "-q", *flags)
    assert code == 0, err
    label_arg = rasters if isinstance(rasters, Path) else rasters[0]
    code, _, err = seg_run("tile", *scenes, "--labels", label_arg, "--out", b, "-q", *flags)
    assert code == 0, err
    ma, mb = _masks(a), _masks(b)
    assert ma.keys() == mb.keys() == {s.stem for s in scenes}
    differ = sum(int((ma[k] != mb[k]).sum()) for k in ma)
    total = sum(ma[k].size for k in ma)
    for k in ma:
        assert (ma[k] == 1).mean() > 0.01  # the labels landed on the scene
    return differ / total


def test_kampala_geojson_and_masks_agree(tmp_path: Path, seg_run: Run) -> None:
    folder = shared_data("kampala")
    scenes = sorted(folder.glob("*_image.tif"))
    # The mask rasters are matched by name: kampala_..._image.tif -> kampala_..._buildings_mask.tif
    assert _compare(tmp_path, seg_run, scenes, folder / "buildings.geojson", folder) == 0.0
    store = WindowStore.open(str(tmp_path / "raster.zarr"))
    big = store.scene("kampala_z21_3072x2048_image")
    assert big.image.shape == (24, 3, 512, 512)
    assert 0.001 < (big.mask[:] == 255).mean() < 0.01  # the alpha mask's 0.3 % no-data is ignore


def test_spacenet_atlanta_and_vegas(tmp_path: Path, seg_run: Run) -> None:
    folder = shared_data("spacenet")
    atlanta = _compare(
        tmp_path / "a",
        seg_run,
        [folder / "atlanta_pan_900.tif"],
        folder / "atlanta_buildings.geojson",
        folder / "atlanta_buildings_mask.tif",
        "--size",
        "256",
    )
    assert atlanta == 0.0
    # Road centre lines buffered 2 m each side (4 m wide) reproduce the 4 m mask but for a pixel.
    vegas = _compare(
        tmp_path / "v",
        seg_run,
        [folder / "vegas_roads_1300.tif"],
        folder / "vegas_roads.geojson",
        folder / "vegas_roads_mask_4m.tif",
        "--size",
        "256",
        "--label-buffer",
        "2",
    )
    assert vegas < 1e-4


def test_spacenet_geojson_in_the_scene_crs_without_crs_member(tmp_path: Path, seg_run: Run) -> None:
    folder = shared_data("spacenet")
    scene, labels = (
        folder / "landsat_albers_int16_512.tif",
        folder / "landsat_albers_fields_nocrs.geojson",
    )
    code, _, err = seg_run("tile", scene, "--labels", labels, "--out", tmp_path / "x.zarr", "-q")
    assert code == 1 and "--label-crs" in err and len(err.strip().splitlines()) == 1
    code, _, err = seg_run(
        "tile",
        scene,
        "--labels",
        labels,
        "--label-crs",
        "scene",
        "--out",
        tmp_path / "l.zarr",
        "-q",
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "l.zarr")).scenes()
    assert s.image.dtype == np.int16 and (s.mask[:] == 1).mean() > 0.01
    assert s.band_stats.minimum.min() > -9999  # nodata -9999 is not data


REFUSED = {"sar_complex64.tif": "complex", "cog_gcps.tif": "ground control points"}


@pytest.mark.parametrize(
    "name",
    [
        "RGB.byte.tif",
        "RGBA.byte.tif",
        "cogeo.tif",
        "goes.tif",
        "cog_nodata.tif",
        "web.tif",
        "mosaic_cog1.tif",
        "pix4d_alpha_nodata.tif",
        "cog_gcps.tif",
        "naip_rgbn_4band.tif",
        "landsat_10band_uint16.tif",
        "ms_4band_float64.tif",
        "sar_complex64.tif",
    ],
)
def test_robustness_rasters_tiled_or_refused(tmp_path: Path, seg_run: Run, name: str) -> None:
    path = shared_data("rasters", name)
    out = tmp_path / "r.zarr"
    code, _, err = seg_run("tile", path, "--out", out, "--size", "256", "-q")
    if name in REFUSED:
        assert code == 1 and REFUSED[name] in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
        return
    assert code == 0, err
    (s,) = WindowStore.open(str(out)).scenes()
    assert len(s) >= 1 and s.image.shape[1] == len(s.attrs.bands)
    assert np.isfinite(s.band_stats.mean).all() and (s.band_stats.std > 0).all()


def test_gcp_raster_in_pixel_space(tmp_path: Path, seg_run: Run) -> None:
    path = shared_data("rasters", "cog_gcps.tif")
    code, _, err = seg_run(
        "tile", path, "--out", tmp_path / "p.zarr", "--size", "256", "--pixel-space", "-q"
    )
    assert code == 0, err
    (s,) = WindowStore.open(str(tmp_path / "p.zarr")).scenes()
    assert s.attrs.pixel_space and s.attrs.tags["TIFFTAG_IMAGEDESCRIPTION"].startswith("Sentinel-1")
