"""The UNet's own options: its decoder widths and the scale it runs at (`model.scale`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff

from seg.errors import ConfigError
from seg.models.unet import build_unet, check_scale

Run = Callable[..., tuple[int, str, str]]


def test_a_scaled_unet_sees_the_averaged_image_and_answers_on_the_native_grid() -> None:
    torch.manual_seed(0)
    native = build_unet({"in_channels": 3, "num_classes": 2})
    scaled = build_unet({"in_channels": 3, "num_classes": 2, "scale": 0.5})
    assert native.state_dict().keys() == scaled.state_dict().keys()  # weights move between them
    scaled.load_state_dict(native.state_dict())
    native.eval()
    scaled.eval()
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        out = scaled(x)
        # By hand: 2x2 means (B, 3, 64, 48) -> native network -> bilinear back to (B, 2, 128, 96).
        small = native(x.reshape(2, 3, 64, 2, 48, 2).mean(dim=(3, 5)))
        expected = F.interpolate(small, size=(128, 96), mode="bilinear", align_corners=False)
    assert out.shape == (2, 2, 128, 96)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_decoder_widths_are_the_configs() -> None:
    light = build_unet({"in_channels": 3, "num_classes": 2, "decoder_channels": [64, 32, 16, 8, 8]})
    default = build_unet({"in_channels": 3, "num_classes": 2})  # what older checkpoints hold
    n_light = sum(p.numel() for p in light.parameters())
    n_default = sum(p.numel() for p in default.parameters())
    assert n_light < n_default
    assert light.segmentation_head[0].in_channels == 8
    assert default.segmentation_head[0].in_channels == 16


@pytest.mark.parametrize("conditioning", [None, {"widths": [2], "mechanism": "deep"}])
def test_model_dropout_drops_decoder_channels_while_training_only(
    conditioning: dict[str, object] | None,
) -> None:
    torch.manual_seed(0)
    section = {"in_channels": 3, "num_classes": 2, "conditioning": conditioning}
    plain = build_unet(section)
    dropped = build_unet({**section, "dropout": 0.5})
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # checkpoints move freely
    dropped.load_state_dict(plain.state_dict())
    x, meta = torch.randn(2, 3, 64, 64), (torch.ones(2, 3) if conditioning else None)  # D 2 + F 1
    for m in (plain, dropped):
        for module in m.modules():  # batch norm in eval: only dropout may differ between calls
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    with torch.no_grad():
        a, b = (dropped(x, meta) if meta is not None else dropped(x) for _ in range(2))
        ref = plain(x, meta) if meta is not None else plain(x)
        assert not torch.allclose(a, b)  # a fresh draw of dropped channels each call
        assert not torch.allclose(a, ref)
        assert torch.equal(ref, plain(x, meta) if meta is not None else plain(x))
        dropped.eval()
        torch.testing.assert_close(dropped(x, meta) if meta is not None else dropped(x), ref)


@pytest.mark.parametrize(
    ("scale", "sizes", "smallest"),
    [
        (0.3, {"window": 512}, "0.0625"),  # 153.6 px
        (0.125, {"window": 512, "crop": 384}, "0.25"),  # 48 px crop
        (0.5, {"window": 96}, "0.333333"),  # 48 px
    ],
)
def test_a_scale_off_the_stride_is_refused_naming_the_smallest(
    scale: float, sizes: dict[str, int], smallest: str
) -> None:
    with pytest.raises(ConfigError, match=f"smallest valid scale is {smallest}"):
        check_scale(scale, sizes)


@pytest.mark.parametrize(
    ("scale", "sizes"), [(1.0, {"w": 512}), (0.5, {"w": 512, "c": 384}), (0.25, {"w": 128})]
)
def test_a_scale_on_the_stride_is_accepted(scale: float, sizes: dict[str, int]) -> None:
    check_scale(scale, sizes)


def test_train_refuses_a_bad_scale_in_one_line(tmp_path: Path, seg_run: Run) -> None:
    from conftest import write_window_store

    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=2)
    run = tmp_path / "run"
    code, _, err = seg_run(
        "train", "-c", "configs/unet_mobilenetv2.yaml", "-d", store, "--out", run,
        "--set", "model.scale=0.3", "--set", "augment.crop=null",
    )  # fmt: skip
    assert one_line_error(code, err) and "smallest valid scale is 0.5" in err, err
    assert not run.exists()
    code, _, err = seg_run(
        "train", "-c", "configs/unet_mobilenetv2.yaml", "-d", store, "--out", run,
        "--set", "model.decoder_channels=[64,32]",
    )  # fmt: skip
    assert one_line_error(code, err) and "decoder_channels" in err, err


def test_predict_with_a_scaled_checkpoint_writes_the_native_grid(
    tmp_path: Path, seg_run: Run
) -> None:
    image, _ = synthetic_pair(100, 90, 3, seed=3)
    scene = write_geotiff(tmp_path / "s.tif", image)
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64, scale=0.5)
    out = tmp_path / "s_mask.tif"
    code, _, err = seg_run("predict", scene, "-k", ckpt, "--out", out, "-q")
    assert code == 0, err
    with rasterio.open(out) as m, rasterio.open(scene) as s:
        assert (m.width, m.height, m.transform, m.crs) == (s.width, s.height, s.transform, s.crs)
        assert set(np.unique(m.read(1))) <= {0, 1}
