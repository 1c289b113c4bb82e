"""`model.init_from`: a new run starts from an earlier model's weights, and only its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_checkpoint
from train_helpers import CONFIG, seg_inprocess, train_args

from seg.checkpoint import load_checkpoint
from seg.training.resolution import auto_scale

pytestmark = pytest.mark.slow  # several real training runs


def run(monkeypatch, capsys, store: Path, out: Path, *extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    return seg_inprocess(monkeypatch, capsys, *train_args(store, out, *extra))


CONV = "encoder.features.0.0.weight"
# The shipped config's model options: an earlier model must have been built the same way.
SHIPPED = yaml.safe_load(Path(CONFIG).read_text())["model"]
# (`model.scale: auto` resolves to 0.5 on the test stores' 0.5 m pixels)
SCALE = auto_scale(0.5) if SHIPPED["scale"] == "auto" else SHIPPED["scale"]
SAME = {"decoder_channels": SHIPPED["decoder_channels"], "scale": SCALE}


def earlier_model(path: Path, **kwargs: object) -> tuple[Path, torch.Tensor]:
    """A checkpoint whose first conv is unlike any fresh init (which seed 0 would repeat)."""
    make_checkpoint(path, size=64, **{**SAME, **kwargs})  # type: ignore[arg-type]
    state = load_checkpoint(str(path))
    state["state_dict"][CONV] = state["state_dict"][CONV] + 0.5
    torch.save(state, path)
    return path, state["state_dict"][CONV]


def test_init_from_takes_the_weights_and_starts_its_own_counters(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=2)
    source, start = earlier_model(tmp_path / "earlier.pt")
    out = tmp_path / "run"
    # lr 1e-9: one step moves the weights by ~1e-9, so they must still be the earlier model's.
    code, err = run(
        monkeypatch, capsys, store, out, f"model.init_from={source}", "train.epochs=1",
        "train.steps_per_epoch=1", "optim.lr=1e-9", "augment.crop=null",
    )  # fmt: skip
    assert code == 0, err
    state = load_checkpoint(str(out / "last.pt"))
    assert state["step"] == 1 and state["epoch"] == 1  # this run's counters, from 0
    torch.testing.assert_close(state["state_dict"][CONV], start, atol=1e-6, rtol=0)
    code, err = run(monkeypatch, capsys, store, tmp_path / "fresh", "train.epochs=1",
                    "train.steps_per_epoch=1", "optim.lr=1e-9", "augment.crop=null")  # fmt: skip
    fresh = load_checkpoint(str(tmp_path / "fresh" / "last.pt"))["state_dict"]
    assert (fresh[CONV] - start).abs().max() > 0.4  # without it: a fresh init


def test_init_from_with_other_classes_starts_the_head_afresh(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=2)
    source = make_checkpoint(tmp_path / "three.pt", size=64, classes=3, **SAME)
    out = tmp_path / "run"
    code, err = run(
        monkeypatch, capsys, store, out, f"model.init_from={source}", "train.epochs=1",
        "train.steps_per_epoch=1", "augment.crop=null",
    )  # fmt: skip
    assert code == 0, err
    assert "classification head starts afresh" in err
    assert load_checkpoint(str(out / "last.pt"))["model"]["num_classes"] == 2


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: make_checkpoint(p, bands=4, size=64, **SAME), "trained on 4 bands"),
        (
            lambda p: make_checkpoint(p, size=64, scale=0.5, decoder_channels=[64, 32, 16, 8, 8]),
            "does not fit this model",
        ),
    ],
)
def test_init_from_a_model_that_cannot_fit_is_one_line(
    make_store, tmp_path: Path, monkeypatch, capsys, make, says: str
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=2)
    source = make(tmp_path / "other.pt")
    out = tmp_path / "run"
    code, err = run(monkeypatch, capsys, store, out, f"model.init_from={source}", "train.epochs=1")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and says in lines[0], err
    assert not out.exists() or not list(out.glob("*.pt"))


def test_pix2pix_starts_its_generator_from_a_unet(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=2)
    source, start = earlier_model(tmp_path / "unet.pt")
    out = tmp_path / "gan"
    code, err = run(
        monkeypatch, capsys, store, out, "model.name=pix2pix", f"model.init_from={source}",
        "train.epochs=1", "train.steps_per_epoch=1", "optim.lr=1e-9", "augment.crop=null",
    )  # fmt: skip
    assert code == 0, err
    state = load_checkpoint(str(out / "last.pt"))
    torch.testing.assert_close(state["state_dict"][CONV], start, atol=1e-6, rtol=0)
    assert "discriminator" in state
