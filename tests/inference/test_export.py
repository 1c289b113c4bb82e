"""`seg export`: inference-only models that `seg predict` runs like the checkpoint itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff

from seg.inference.predictor import load_predictor

Run = Callable[..., tuple[int, str, str]]


def masks_and_probs(seg_run: Run, scene: Path, model: Path, out: Path) -> tuple[np.ndarray, ...]:
    code, _, err = seg_run(
        "predict", scene, "-k", model, "--out", out, "--probabilities", "--prob-dtype", "float16",
        "--precision", "fp32", "--coarse-pass", "off", "-q",
    )  # fmt: skip
    assert code == 0, err
    with rasterio.open(out) as m, rasterio.open(out.with_name(out.stem + "_probs.tif")) as p:
        return m.read(1), p.read().astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_onnx_export_predicts_like_the_checkpoint(
    tmp_path: Path, seg_run: Run, scale: float
) -> None:
    import onnx

    ckpt = make_checkpoint(tmp_path / "best.pt", size=64, scale=scale)
    model = tmp_path / "model.onnx"
    code, text, err = seg_run("export", ckpt, "--format", "onnx", "--out", model)
    assert code == 0 and "exported: onnx" in text, err
    onnx.checker.check_model(onnx.load(str(model)))
    from seg.inference.onnx_predictor import load_onnx

    runner, info = load_onnx(str(model))
    torch_runner, _ = load_predictor(str(ckpt), device="cpu", precision="fp32")
    assert info.size == 64 and info.class_names == ("background", "building")
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    for batch in (x[:1], x):  # the batch axis is dynamic
        np.testing.assert_allclose(runner(batch), torch_runner(batch), atol=1e-4)
    image, _ = synthetic_pair(150, 110, 3, seed=2)
    scene = write_geotiff(tmp_path / "s.tif", image)
    ours, p_ours = masks_and_probs(seg_run, scene, model, tmp_path / "onnx" / "s_mask.tif")
    theirs, p_theirs = masks_and_probs(seg_run, scene, ckpt, tmp_path / "torch" / "s_mask.tif")
    assert (ours == theirs).mean() >= 0.999
    assert np.abs(p_ours - p_theirs).max() <= 1e-3
    # The export's input is the training window: a larger predict window is refused in one line.
    out = tmp_path / "w" / "s_mask.tif"
    code, _, err = seg_run("predict", scene, "-k", model, "--out", out, "--window-size", "128")
    assert one_line_error(code, err) and "ONNX export runs on its training window" in err, err
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # Nor a pass at half its window; by default (auto) the export runs without one.
    code, _, err = seg_run("predict", scene, "-k", model, "--out", out, "--coarse-pass", "on")
    assert one_line_error(code, err) and "--coarse-pass on" in err, err
    code, _, err = seg_run("predict", scene, "-k", model, "--out", out, "-q")
    with rasterio.open(out) as m:
        assert code == 0 and m.tags()["SEG_COARSE_PASS"] == "false", err


def test_safetensors_export_is_the_checkpoints_network(tmp_path: Path, seg_run: Run) -> None:
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    model = tmp_path / "model.safetensors"
    assert seg_run("export", ckpt, "--format", "safetensors", "--out", model)[0] == 0
    assert model.stat().st_size < (tmp_path / "best.pt").stat().st_size * 1.1
    image, _ = synthetic_pair(90, 70, 3, seed=3)
    scene = write_geotiff(tmp_path / "s.tif", image)
    ours = masks_and_probs(seg_run, scene, model, tmp_path / "st" / "s_mask.tif")
    theirs = masks_and_probs(seg_run, scene, ckpt, tmp_path / "pt" / "s_mask.tif")
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    import yaml

    code, text, err = seg_run("info", model)
    assert code == 0 and yaml.safe_load(text)["kind"] == "export (safetensors)", err
    code, text, err = seg_run("export", ckpt, "--format", "onnx", "--out", tmp_path / "m.onnx")
    code, text, err = seg_run("info", tmp_path / "m.onnx")
    assert code == 0 and yaml.safe_load(text)["parameters"] > 10**5, err


def test_torchscript_export_runs_elsewhere_but_predict_will_not_load_it(
    tmp_path: Path, seg_run: Run
) -> None:
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    model = tmp_path / "model.ts"
    assert seg_run("export", ckpt, "--format", "torchscript", "--out", model)[0] == 0
    extra = {"seg.json": ""}
    traced = torch.jit.load(str(model), _extra_files=extra)  # what another runtime does
    text = extra["seg.json"]
    text = text.decode() if isinstance(text, bytes) else text
    assert '"class_names": ["background", "building"]' in text
    torch_runner, _ = load_predictor(str(ckpt), device="cpu", precision="fp32")
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        probs = torch.softmax(traced(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(probs, torch_runner(x), atol=1e-5)
    scene = write_geotiff(tmp_path / "s.tif", synthetic_pair(64, 64, 3, seed=1)[0])
    code, _, err = seg_run("predict", scene, "-k", model, "--out", tmp_path / "m.tif", "-q")
    assert one_line_error(code, err) and "TorchScript" in err, err


def test_export_mistakes_are_one_line(tmp_path: Path, seg_run: Run) -> None:
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    scene = write_geotiff(tmp_path / "s.tif", synthetic_pair(64, 64, 3, seed=1)[0])
    code, _, err = seg_run("export", ckpt, "--format", "tflite", "--out", tmp_path / "m.tflite")
    assert one_line_error(code, err) and "choose one of ['onnx'" in err, err
    code, _, err = seg_run("export", ckpt, "--format", "onnx", "--out", ckpt)
    assert one_line_error(code, err) and "the checkpoint itself" in err, err
    out = tmp_path / "m.tif"
    code, _, err = seg_run("predict", scene, "-k", ckpt, "--runtime", "onnx", "--out", out, "-q")
    assert one_line_error(code, err) and "seg export" in err, err
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    code, _, err = seg_run("predict", scene, "-k", tmp_path / "fake.onnx", "--out", out, "-q")
    assert one_line_error(code, err) and "not a readable ONNX model" in err, err
    assert not out.exists()
