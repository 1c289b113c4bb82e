"""seg/geo/raster.py: the COG writer (local and gs://, nothing left on error) and valid masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import write_geotiff
from rasterio.windows import Window

from seg import fs as segfs
from seg.geo.cog import cog_writer, output_profile
from seg.geo.raster import open_raster, read_strip, scene_info


def _info(path: Path):  # type: ignore[no-untyped-def]
    with open_raster(str(path)) as ds:
        return scene_info(ds, str(path))


def test_cog_writer_same_grid_by_windows(tmp_path: Path) -> None:
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((3, 700, 600), np.uint8))
    info = _info(scene)
    out = tmp_path / "pred.tif"
    with cog_writer(str(out), output_profile(info, 1, "uint8", nodata=255)) as dst:
        for r in range(0, 700, 256):  # written row block by row block, as a stitcher would
            h = min(256, 700 - r)
            dst.write(np.full((1, h, 600), r // 256, np.uint8), window=Window(0, r, 600, h))
    with rasterio.open(out) as m, rasterio.open(scene) as s:
        assert (m.width, m.height, m.crs, m.transform) == (s.width, s.height, s.crs, s.transform)
        assert m.nodata == 255 and m.profile["tiled"] and m.overviews(1)  # a COG: tiled + overviews
        assert m.read(1)[300, 10] == 1
    # An error inside the block leaves nothing at the path.
    bad = tmp_path / "bad.tif"
    with pytest.raises(RuntimeError), cog_writer(str(bad), output_profile(info, 1, "uint8")):
        raise RuntimeError("model crashed")
    assert not bad.exists() and not list(tmp_path.glob(".bad.tif*"))


def test_cog_writer_to_gcs(tmp_path: Path, gcs_bucket: str) -> None:
    scene = write_geotiff(tmp_path / "s.tif", np.zeros((1, 64, 64), np.uint8))
    url = f"{gcs_bucket}/out/mask.tif"
    with cog_writer(url, output_profile(_info(scene), 1, "uint8")) as dst:
        dst.write(np.ones((1, 64, 64), np.uint8))
    assert segfs.exists(url)
    with open_raster(url) as ds:
        assert ds.read(1).sum() == 64 * 64


def test_float_nan_and_nodata_are_invalid(tmp_path: Path) -> None:
    data = np.ones((2, 4, 5), np.float32)
    data[0, 0, 0] = np.nan
    data[:, 1, 1] = -1.0
    scene = write_geotiff(tmp_path / "f.tif", data, nodata=-1.0)
    info = _info(scene)
    with open_raster(str(scene)) as ds:
        image, valid = read_strip(ds, info, 0, 4)
    assert image.shape == (2, 4, 5) and not valid[0, 0] and not valid[1, 1] and valid.sum() == 18


@pytest.mark.slow
def test_a_vrt_pixel_function_never_runs(tmp_path: Path) -> None:
    """A .vrt scene with an inline Python pixel function: seg tile must not run its code, even
    with GDAL_VRT_ENABLE_PYTHON=YES in the environment."""
    import subprocess
    import sys

    from conftest import write_geotiff

    base = write_geotiff(tmp_path / "base.tif", np.ones((1, 64, 64), np.uint8))
    marker = tmp_path / "pwned"
    code = "\n".join(
        [
            f"open({str(marker)!r}, 'w').write('ran')",
            "def f(in_ar, out_ar, *args, **kw):",
            "    out_ar[:] = in_ar[0]",
        ]
    )
    vrt = tmp_path / "evil.vrt"
    vrt.write_text(f"""<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>EPSG:32633</SRS>
  <GeoTransform>500000, 0.5, 0, 4000000, 0, -0.5</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTDerivedRasterBand">
    <PixelFunctionType>f</PixelFunctionType>
    <PixelFunctionLanguage>Python</PixelFunctionLanguage>
    <PixelFunctionCode><![CDATA[{code}]]></PixelFunctionCode>
    <SimpleSource><SourceFilename relativeToVRT="0">{base}</SourceFilename>
      <SourceBand>1</SourceBand></SimpleSource>
  </VRTRasterBand>
</VRTDataset>""")
    env = {**os.environ, "GDAL_VRT_ENABLE_PYTHON": "YES"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "seg",
            "tile",
            str(vrt),
            "--out",
            str(tmp_path / "o.zarr"),
            "--size",
            "32",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert not marker.exists(), "the VRT's Python code ran"
    assert res.returncode in (0, 1), res.stderr  # refused in one line or tiled without it
