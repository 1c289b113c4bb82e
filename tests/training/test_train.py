"""`seg train` end to end on tiny stores: outputs, learning, NaN guard, and bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_helpers import CONFIG, seg_inprocess, train_args, weights

from seg.checkpoint import load_checkpoint
from seg.inference.predictor import load_predictor


def run(monkeypatch, capsys, store: Path, out: Path, *extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    return seg_inprocess(monkeypatch, capsys, *train_args(store, out, *extra))


@pytest.mark.slow
def test_short_run_writes_checkpoints_logs_and_a_usable_model(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=4)
    out = tmp_path / "run"
    code, err = run(
        monkeypatch,
        capsys,
        store,
        out,
        "train.epochs=2",
        "train.steps_per_epoch=2",
        "checkpoint.every_epochs=1",
        "checkpoint.keep=1",
        "train.precision=bf16",
    )
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert {
        "best.pt",
        "last.pt",
        "latest.json",
        "config.yaml",
        "metrics.jsonl",
        "tensorboard",
    } <= set(names)
    assert [n for n in names if n.startswith("epoch_")] == ["epoch_0002.pt"]  # keep=1
    assert "epoch 1 step 4" in err  # the one-line epoch summary
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["epochs"] == 2 and config["data"]["batch_size"] == 2
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert set(records[0]["per_class"]) == {"background", "building"}
    state = load_checkpoint(str(out / "last.pt"))
    assert state["class_names"] == ["background", "building"]
    assert len(state["band_stats"]["mean"]) == 3 and state["bands"] == [1, 2, 3]
    assert state["dtype"] == "uint8"  # seg predict refuses scenes of another pixel type
    predictor, info = load_predictor(str(out / "last.pt"), device="cpu", precision="fp32")
    assert info.class_names == ("background", "building") and info.dtype == "uint8"
    assert predictor(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 2, 64, 64)
    # TensorBoard got scalars, per-class metrics and the preview grid.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "val_iou/building"} <= set(tags["scalars"])
    assert tags["images"] == ["val/image|truth|prediction"]
    # Re-running into the same folder without --resume refuses instead of mixing two runs.
    code, err = run(monkeypatch, capsys, store, out, "train.epochs=1")
    assert code == 1 and "--resume auto" in err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store(windows=4)
    out = tmp_path / "run"
    code, err = run(
        monkeypatch,
        capsys,
        store,
        out,
        "train.epochs=1",
        "train.steps_per_epoch=4",
        "checkpoint.every_steps=1",
        "optim.lr=1e30",
        "optim.grad_clip=null",
        "schedule.name=constant",
        "schedule.warmup_steps=0",
    )
    assert code == 3  # EXIT_DIVERGED: `seg queue` does not retry it (resume would diverge again)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("seg: error: loss became nan"), err
    assert "last good checkpoint" in lines[-1] and "optim.lr" in lines[-1]
    good = json.loads((out / "latest.json").read_text())["step"]
    w = weights(out / "last.pt")
    assert all(torch.isfinite(t).all() for t in w.values() if t.is_floating_point())
    assert load_checkpoint(str(out / "last.pt"))["step"] == good


def test_checkpoint_of_another_band_count_is_refused(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    three = make_store(name="three.zarr", windows=2)
    four = make_store(name="four.zarr", windows=2, bands=4)
    out = tmp_path / "run"
    code, err = run(monkeypatch, capsys, three, out, "train.epochs=1", "train.steps_per_epoch=1")
    assert code == 0, err
    args = train_args(four, tmp_path / "other", "train.epochs=1")
    code, err = seg_inprocess(monkeypatch, capsys, *args, "--resume", str(out / "last.pt"))
    assert code == 1
    assert "3 bands" in err and "4 bands" in err and err.count("\n") == 1


BAD_CASES = {
    "missing store": ([], "no window store"),
    "empty train split": (["data.train_split=test"], "split 'test'"),
    "unknown key": (["train.epochz=3"], "unknown key 'train.epochz'"),
    "wrong type": (["train.epochs=many"], "'train.epochs'"),
    "classes disagree": (["data.classes=[sky,sea]"], "disagree with the store"),
    "missing gpu": (["--gpus", "7"], "GPU"),
    "bad early stopping metric": (["early_stopping.metric=iou/cat"], "early_stopping.metric"),
    "batch too big for the RAM": (["data.batch_size=100000"], "GiB of RAM"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_and_exit_1(
    case: str, make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store(windows=1)
    sets, expected = BAD_CASES[case]
    if case == "missing store":
        store = tmp_path / "nowhere.zarr"
    flags = [x for x in sets if x.startswith("--") or "=" not in x]
    overrides = [x for x in sets if x not in flags]
    code, err = seg_inprocess(
        monkeypatch, capsys, *train_args(store, tmp_path / "run", *overrides), *flags
    )
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("seg: error: "), err
    assert expected in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unwritable_run_dir(make_store, tmp_path: Path, monkeypatch, capsys) -> None:
    store = make_store(windows=1)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # even root cannot create a folder below a file
    code, err = run(monkeypatch, capsys, store, blocker / "run")
    assert code == 1 and err.count("\n") == 1 and "cannot write" in err, err


def test_config_file_in_repo_is_valid() -> None:
    from seg.config import TrainConfig, load_config

    cfg = load_config(TrainConfig, CONFIG)
    assert cfg.model.name == "unet_mobilenetv2"


@pytest.mark.slow
def test_short_run_learns_well_above_chance(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "train", "c": "val"}, windows=8)
    out = tmp_path / "run"
    code, err = run(
        monkeypatch,
        capsys,
        store,
        out,
        "train.epochs=6",
        "data.batch_size=4",
        "optim.lr=0.003",
        "schedule.warmup_steps=2",
        "train.deterministic=false",
        "train.precision=bf16",
        "augment.noise=0",
        "augment.illumination=0",  # 24 steps: the loop must learn, not generalise
        "augment.band_jitter=0",
        "train.preview_windows=0",
    )
    assert code == 0, err
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    building = [r["per_class"]["building"]["iou"] for r in records]
    # Chance (predict everything "building") gives IoU = building fraction (~0.15 here).
    support = records[-1]["per_class"]["building"]["support"]
    total = support + records[-1]["per_class"]["background"]["support"]
    assert max(building) > support / total + 0.3, building
    # The posteriors' calibration on the val pixels, kept with the weights it was fitted to:
    # its reference shares are the val labels' (what maximum likelihood with a bias per class
    # gives), which EM in seg predict then reads a scene's shares against.
    from seg.checkpoint import read_checkpoint

    info, _ = read_checkpoint(str(out / "best.pt"))
    cal = info.calibration
    assert cal is not None and 0.25 <= cal["temperature"] <= 8.0 and len(cal["bias"]) == 2
    assert cal["prior"][1] == pytest.approx(support / total, abs=0.02)


def test_early_stopping_counts_epochs_without_improvement() -> None:
    from seg.config import EarlyStoppingSection
    from seg.training.validation import EarlyStopping

    es = EarlyStopping(EarlyStoppingSection(enabled=True, patience=2, min_delta=0.01))
    assert es.update(0.5, 0) and not es.should_stop
    assert not es.update(0.505, 1)  # within min_delta: not an improvement
    assert es.update(0.6, 2) and es.bad_epochs == 0
    assert not es.update(0.4, 3) and not es.should_stop
    assert not es.update(0.59, 4) and es.should_stop
    restored = EarlyStopping(es.section)
    restored.load_state_dict(es.state_dict())
    assert (restored.best, restored.best_epoch, restored.should_stop) == (0.6, 2, True)
    low = EarlyStopping(EarlyStoppingSection(enabled=True, mode="min", patience=1))
    assert low.update(1.0, 0) and low.update(0.5, 1) and not low.update(0.7, 2)
    assert low.should_stop


@pytest.mark.parametrize("name", ["cosine", "onecycle", "constant"])
def test_lr_schedule_warms_up_then_decays(name: str) -> None:
    from seg.config import TrainConfig
    from seg.training.steps import lr_factor

    cfg = TrainConfig.model_validate({"schedule": {"name": name, "warmup_steps": 10}})
    f = [lr_factor(s, cfg, 100) for s in range(100)]
    assert all(a < b for a, b in itertools.pairwise(f[:11]))  # warm-up rises
    assert max(f) == pytest.approx(1.0, abs=0.01)
    if name == "constant":
        assert f[-1] == 1.0
    else:
        assert all(a >= b for a, b in itertools.pairwise(f[10:])) and f[-1] < 0.05


def test_encoder_weights_from_a_file(tmp_path: Path) -> None:
    from seg.errors import ConfigError
    from seg.models.unet import build_unet, load_encoder_weights

    source = build_unet({"in_channels": 3, "num_classes": 2})
    path = tmp_path / "mobilenet_v2_encoder.pt"
    torch.save(source.encoder.state_dict(), path)  # type: ignore[union-attr]
    target = build_unet({"in_channels": 3, "num_classes": 2})
    load_encoder_weights(target, str(path))
    for key, value in source.encoder.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, target.encoder.state_dict()[key])  # type: ignore[union-attr]
    four = build_unet({"in_channels": 4, "num_classes": 2})
    with pytest.raises(ConfigError, match="does not fit"):
        load_encoder_weights(four, str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        load_encoder_weights(four, str(tmp_path / "missing.pt"))
