"""The model page's activations: a preview window through a run's checkpoint, one layer's
feature maps as a grid (the channels with the widest spread), and what it says when it cannot."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_checkpoint
from PIL import Image
from starlette.testclient import TestClient

from seg.checkpoint import read_checkpoint
from seg.inference.predictor import load_network
from seg.training.preview_windows import read_windows, write_windows
from seg.ui import activations as acts
from seg.ui.app import create_app
from seg.ui.model_view import blocks_of
from seg.ui.roots import Roots


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "exp"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("train: {epochs: 1}\n")
    make_checkpoint(run / "last.pt")
    images = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    write_windows(str(run), images, None)
    return run


def feature_maps(run: Path, layer: str, window: int) -> np.ndarray:
    """The block's output (C, H, W), computed here without seg.ui."""
    info, state = read_checkpoint(str(run / "last.pt"))
    net = load_network(info, state, "x")
    images, _ = read_windows(str(run))
    kept: list[torch.Tensor] = []
    hook = dict(blocks_of(net))[layer].register_forward_hook(lambda m, i, o: kept.append(o[0]))
    with torch.no_grad():
        net(torch.from_numpy(images[window : window + 1]))
    hook.remove()
    return kept[0].numpy()


def test_the_grid_draws_the_layers_widest_feature_maps(run: Path) -> None:
    client = TestClient(create_app(Roots(str(run.parent))))
    page = client.get("/model/exp", params={"layer": "encoder.features.1", "window": "1"})
    assert page.status_code == 200
    assert 'id="activations"' in page.text and '<option value="1" selected>' in page.text
    got = client.get("/activations/exp", params={"layer": "encoder.features.1", "window": "1"})
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    maps = feature_maps(run, "encoder.features.1", 1)  # (16, 32, 32) for a 64 px window
    assert got.headers["x-seg-shape"] == "x".join(map(str, maps.shape))
    channels = [int(c) for c in got.headers["x-seg-channels"].split(",")]
    assert channels == sorted(range(len(maps)))[: acts.MAX_MAPS]  # 16 < 63: all of them
    sheet = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))
    cols = math.ceil(math.sqrt(1 + len(channels)))
    step = acts.TILE + acts.GAP
    assert sheet.shape[1] == cols * step - acts.GAP
    # the tile after the window is channel 0's map, scaled on its own: its brightest cell is
    # where the map peaks
    tile = sheet[: acts.TILE, step : step + acts.TILE].astype(int).sum(axis=2)  # (T, T)
    cell = acts.TILE // maps.shape[1]
    peak = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert tile[peak[0] * cell + cell // 2, peak[1] * cell + cell // 2] == tile.max()
    other = client.get("/activations/exp", params={"layer": "encoder.features.1", "window": "0"})
    assert other.content != got.content  # another window, other maps


def test_a_deep_layer_keeps_the_widest_channels(run: Path) -> None:
    maps = feature_maps(run, "encoder.features.17", 0)  # (320, 2, 2)
    result = acts.activations(str(run), layer="encoder.features.17", window=0)
    assert result.shape == maps.shape and len(result.channels) == acts.MAX_MAPS
    spread = maps.reshape(len(maps), -1).std(axis=1)
    assert min(spread[list(result.channels)]) >= np.sort(spread)[-acts.MAX_MAPS] - 1e-6


def test_what_it_says_when_it_cannot(run: Path, tmp_path: Path) -> None:
    client = TestClient(create_app(Roots(str(run.parent))))
    bad = client.get("/activations/exp", params={"layer": "encoder.nope", "window": "0"})
    assert bad.status_code == 400 and "choose one of" in bad.text and "decoder.blocks.0" in bad.text
    bad = client.get("/activations/exp", params={"layer": "encoder.features.1", "window": "7"})
    assert bad.status_code == 400
    assert "not one of the run's 2 preview windows" in html.unescape(bad.text)
    (run / "previews" / "windows.npz").write_bytes(b"not a zip")
    bad = client.get("/activations/exp", params={"layer": "encoder.features.1", "window": "0"})
    assert bad.status_code == 400 and "damaged" in bad.text and "Traceback" not in bad.text
    (run / "previews" / "windows.npz").unlink()
    page = client.get("/model/exp")
    assert page.status_code == 200 and 'id="activations-none"' in page.text
    bad = client.get("/activations/exp", params={"layer": "encoder.features.1"})
    assert bad.status_code == 400 and "no preview windows" in bad.text
