"""pix2pix: PatchGAN shapes, the adversarial step, its stabilisers, resume and config errors."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from conftest import write_window_store
from train_helpers import TINY, seg, seg_inprocess, seg_popen

from seg.checkpoint import load_checkpoint
from seg.config import TrainConfig, validate_dict
from seg.errors import ConfigError
from seg.models import build_model
from seg.models.pix2pix import (
    build_discriminator,
    discriminator_accuracy,
    discriminator_term,
    loss_floor,
    one_hot,
    patch_weights,
    receptive_field,
)
from seg.report import SILENT, Reporter
from seg.training.pix2pix import AdversarialStep
from seg.training.steps import StepSpec
from seg.training.trainers import build_step


class Recorder(Reporter):
    """A reporter that keeps the warnings it is given."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def make_step(
    overrides: dict[str, Any] | None = None,
    bands: int = 3,
    classes: int = 2,
    reporter: Reporter = SILENT,
) -> Any:
    torch.manual_seed(0)
    cfg = validate_dict(
        TrainConfig,
        {"model": {"name": "pix2pix"}, "pix2pix": overrides or {}},
        "test",
    )
    spec = StepSpec(
        in_channels=bands,
        num_classes=classes,
        device=torch.device("cpu"),
        total_steps=20,
        reporter=reporter,
    )
    return build_step(cfg, spec)


def batch(bands: int = 3, classes: int = 2, size: int = 64, seed: int = 1) -> Any:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, bands, size, size, generator=g)
    mask = torch.randint(0, classes, (2, size, size), generator=g)
    mask[:, :5, :] = 255  # a no-data strip
    return image, mask


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.state_dict().values()]


@pytest.mark.parametrize(("bands", "classes"), [(1, 2), (3, 2), (4, 5), (10, 3)])
def test_both_networks_shapes(bands: int, classes: int) -> None:
    torch.set_num_threads(1)
    gen = build_model({"name": "pix2pix", "in_channels": bands, "num_classes": classes})
    disc = build_discriminator(bands, classes)
    image = torch.randn(2, bands, 64, 96)
    logits = gen(image)
    assert logits.shape == (2, classes, 64, 96)
    out = disc(image, logits.softmax(dim=1))
    # three stride-2 convs then two 4x4 stride-1 ones (padding 1): 64 -> 8 -> 6, 96 -> 12 -> 10
    assert out.shape == (2, 1, 6, 10)


def test_patchgan_receptive_field_is_70() -> None:
    assert receptive_field(3) == 70
    assert receptive_field(2) == 34
    # Measured: the gradient of one output logit touches exactly a 70x70 input patch.
    disc = build_discriminator(1, 2, spectral_norm=False)
    image = torch.zeros(1, 1, 128, 128, requires_grad=True)
    out = disc(image, torch.zeros(1, 2, 128, 128))
    out[0, 0, 7, 7].backward()
    assert image.grad is not None
    rows = image.grad[0, 0].abs().sum(dim=1).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_ignore_pixels_drop_out() -> None:
    mask = torch.tensor([[[0, 1], [255, 1]]])
    hot = one_hot(mask, 3)
    assert hot.shape == (1, 3, 2, 2)
    assert hot[0, :, 1, 0].sum() == 0 and hot[0, 1, 0, 1] == 1
    valid = torch.ones(1, 1, 64, 64)
    valid[..., :32] = 0  # left half is no-data
    w = patch_weights(valid, (4, 4))
    assert torch.all(w[..., :2] == 0) and torch.all(w[..., 2:] == 1)
    # Whatever D says on no-data patches does not count.
    out = torch.zeros(1, 1, 4, 4)
    out[..., :2] = 100.0
    target = torch.ones(1, 1, 1, 1)
    base = discriminator_term("lsgan", torch.zeros(1, 1, 4, 4), target, w)
    assert torch.equal(discriminator_term("lsgan", out, target, w), base)


def test_loss_floor_and_accuracy() -> None:
    w = torch.ones(2, 1, 3, 3)
    smooth = torch.full((2, 1, 1, 1), 0.9)
    # The best a D can do against smoothed BCE targets is their entropy, not 0.
    best = torch.full((2, 1, 3, 3), float(torch.logit(torch.tensor(0.9))))
    floor = loss_floor("vanilla", smooth, w)
    assert float(discriminator_term("vanilla", best, smooth, w)) == pytest.approx(floor, abs=1e-5)
    assert floor > 0.3 and loss_floor("lsgan", smooth, w) == 0.0
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    assert discriminator_accuracy("vanilla", real, fake, w) == 1.0
    assert discriminator_accuracy("hinge", fake, real, w) == 0.0
    assert discriminator_accuracy("wgan-gp", real, fake, w) == 1.0


@pytest.mark.parametrize("gan_loss", ["vanilla", "lsgan", "hinge", "wgan-gp"])
def test_steps_change_both_networks(gan_loss: str) -> None:
    torch.set_num_threads(1)
    step = make_step({"gan_loss": gan_loss, "flip_prob": 0.2, "soft_label_width": 0.1})
    assert isinstance(step, AdversarialStep)
    g0, d0 = params(step.generator), params(step.discriminator)
    image, mask = batch()
    for _ in range(2):
        stats = step.train_step(image, mask)
        step.step_schedulers()
    for key in ("loss", "seg_loss", "g_adv", "d_real", "d_fake", "d_loss", "d_acc", "noise"):
        assert key in stats and stats[key] == stats[key], key  # present and not NaN
    assert 0.0 <= stats["d_acc"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(g0, params(step.generator), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, params(step.discriminator), strict=True))


def test_update_ratio_and_ttur() -> None:
    torch.set_num_threads(1)
    step = make_step({"d_steps": 3, "lr_d": 5e-4})
    # TTUR: each optimizer has its own base LR (the schedulers scale both the same way).
    assert step.optimizer_d.param_groups[0]["initial_lr"] == 5e-4
    assert step.optimizer.param_groups[0]["initial_lr"] == step.cfg.optim.lr != 5e-4
    image, mask = batch()
    step.train_step(image, mask)
    # Adam's step counter: three D updates and one G update for this batch.
    d_state = next(iter(step.optimizer_d.state.values()))
    g_state = next(iter(step.optimizer.state.values()))
    assert int(d_state["step"]) == 3 and int(g_state["step"]) == 1


def test_instance_noise_anneals_to_zero() -> None:
    step = make_step({"instance_noise": 0.2, "instance_noise_steps": 2, "lambda_adv": 0.0})
    image, mask = batch(size=32)
    noises = [step.train_step(image, mask)["noise"] for _ in range(3)]
    assert noises == pytest.approx([0.2, 0.1, 0.0])


def test_collapse_warnings() -> None:
    torch.set_num_threads(1)
    # A threshold no real D loss stays under, and a generator stuck on class 0.
    recorder = Recorder()
    step = make_step({"collapse_patience": 2, "d_collapse_loss": 100.0}, reporter=recorder)
    head = step.generator.segmentation_head[0]
    with torch.no_grad():
        head.bias.copy_(torch.tensor([1e4, -1e4]))
    image, mask = batch(size=32)
    for _ in range(3):
        step.train_step(image, mask)
    text = "\n".join(recorder.warnings)
    assert "discriminator loss collapsed" in text
    assert "predicted a single class" in text
    assert text.count("discriminator loss collapsed") == 1  # once per episode, not every step


def run(step: Any, n: int, seed: int = 5) -> None:
    for i in range(n):
        image, mask = batch(seed=seed + i, size=32)
        step.train_step(image, mask)
        step.step_schedulers()


def test_state_round_trip_resumes_identically() -> None:
    torch.set_num_threads(1)
    settings = {"flip_prob": 0.3, "soft_label_width": 0.1, "instance_noise_steps": 3}
    straight = make_step(settings)
    run(straight, 4)

    first = make_step(settings)
    run(first, 2)
    buf = io.BytesIO()
    torch.save({**first.state_dict(), "rng": torch.get_rng_state()}, buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert {"discriminator", "optimizer_d", "scheduler_d", "state_dict"} <= set(state)
    resumed = make_step(settings)  # fresh weights, then the checkpoint
    resumed.load_state_dict(state)
    torch.set_rng_state(state["rng"])
    run(resumed, 2, seed=7)

    for net in ("generator", "discriminator"):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), net


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"lambda_adv": -1}, "pix2pix.lambda_adv"),
        ({"gan_loss": "wgan"}, "pix2pix.gan_loss"),
        ({"d_steps": 2, "g_steps": 2}, "not both"),
        ({"gan_loss": "wgan-gp", "d_norm": "batch"}, "batch norm"),
        ({"real_label": 0.3}, "pix2pix.real_label"),
        ({"lamda_adv": 0.1}, "unknown key 'pix2pix.lamda_adv'"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as err:
        validate_dict(TrainConfig, {"model": {"name": "pix2pix"}, "pix2pix": settings}, "x.yaml")
    assert "\n" not in str(err.value)


# --- through the real `seg train` / `seg predict` ------------------------------------------

P2P_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "pix2pix.yaml")
RUN_SETS = [
    "train.epochs=1",
    "train.steps_per_epoch=4",
    "checkpoint.every_steps=1",
    "pix2pix.flip_prob=0.2",
    "pix2pix.soft_label_width=0.1",
]


def latest_step(run: Path) -> int:
    try:
        return int(json.loads((run / "latest.json").read_text())["step"])
    except (FileNotFoundError, ValueError):
        return -1


def p2p_args(store: Path, out: Path, *sets: str) -> list[str]:
    args = ["train", "--config", P2P_CONFIG, "--data", str(store), "--out", str(out)]
    for s in [*TINY, *RUN_SETS, *sets]:
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny store and one uninterrupted 4-step pix2pix run on it: (store, run dir)."""
    root = tmp_path_factory.mktemp("p2p")
    store = write_window_store(root / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    done = seg(*p2p_args(store, root / "straight"))
    assert done.returncode == 0, done.stderr[-2000:]
    return store, root / "straight"


@pytest.mark.slow
def test_sigterm_then_resume_equals_straight_run(
    straight_run: tuple[Path, Path], tmp_path: Path
) -> None:
    store, straight = straight_run
    run = tmp_path / "run"
    proc = seg_popen(*p2p_args(store, run))
    deadline = time.monotonic() + 180
    while latest_step(run) < 2:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "timed out waiting for the training subprocess"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    assert "--resume auto" in err
    saved = load_checkpoint(str(run / "last.pt"))
    assert 2 <= saved["step"] < 4
    for key in ("state_dict", "discriminator", "optimizer", "optimizer_d", "scheduler_d"):
        assert saved[key], key

    resumed = seg(*p2p_args(store, run), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_checkpoint(str(straight / "last.pt")), load_checkpoint(str(run / "last.pt"))
    assert a["step"] == b["step"] == 4
    for net in ("state_dict", "discriminator"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)


@pytest.mark.slow
def test_checkpoint_predicts_through_seg_predict(
    straight_run: tuple[Path, Path], make_scene: Any, tmp_path: Path
) -> None:
    _, run = straight_run
    state = load_checkpoint(str(run / "last.pt"))
    # The checkpoint's `state_dict` is the generator alone, loadable into a plain UNet.
    assert state["model"]["name"] == "pix2pix"
    unet = build_model({**state["model"], "name": "unet_mobilenetv2"})
    assert state["state_dict"].keys() == unet.state_dict().keys()
    assert not any(k.startswith("discriminator") for k in state["state_dict"])

    scene, _ = make_scene("scene", height=100, width=130)
    out = tmp_path / "predicted.tif"  # (scene_mask.tif is the label make_scene wrote)
    done = seg("predict", str(scene), "--checkpoint", str(run / "last.pt"), "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    with rasterio.open(out) as dst, rasterio.open(scene) as src:
        assert (dst.width, dst.height, dst.crs) == (src.width, src.height, src.crs)
        mask = dst.read(1)
    assert set(np.unique(mask)) <= {0, 1}


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("pix2pix.lambda_adv=-0.5", "pix2pix.lambda_adv"),
        ("pix2pix.gan_loss=bce", "pix2pix.gan_loss"),
        ("pix2pix.lr_d=0", "pix2pix.lr_d"),
    ],
)
def test_bad_settings_fail_the_cli_in_one_line(
    setting: str,
    words: str,
    make_store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = make_store()
    out = tmp_path / "run"
    code, err = seg_inprocess(monkeypatch, capsys, *p2p_args(store, out, setting))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seg: error: invalid config"), err
    assert words in lines[0]
    assert not out.exists()
