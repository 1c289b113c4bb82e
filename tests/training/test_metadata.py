"""`model.metadata` end to end through the real CLI: a set whose labels only the metadata can
explain is learnt with conditioning and not without; the checkpoint carries the codec and
predict, store prediction and exports encode new scenes with it; resume stays bit-identical;
bad metadata ends in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import one_line_error
from train_helpers import seg, seg_inprocess, seg_popen, train_args, weights

from seg.checkpoint import load_checkpoint
from seg.data.synthetic import write_seasons

FAST = ["train.epochs=1", "train.steps_per_epoch=2", "early_stopping.enabled=false"]


def season_store(tmp_path: Path, scenes: int, size: int, *, train: int, name: str = "st.zarr"):
    """The seasons set (seg.data.synthetic.write_seasons) tiled: the first `train` scenes in
    train, the next two in val; the rest are left for prediction."""
    folder = tmp_path / "scenes"
    made = write_seasons(str(folder), scenes=scenes, size=size)
    ids = [Path(s).stem for s, _, _ in made]
    store = tmp_path / name
    tiled = seg(
        "tile", *[s for s, _, _ in made[: train + 2]], "--labels", str(folder / "masks"),
        "--out", str(store), "--size", "64", "-q",
        "--set", f"splits.train_scenes={ids[:train]}",
        "--set", f"splits.val_scenes={ids[train : train + 2]}",
        "--set", "classes=[background, crop]",
    )  # fmt: skip
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    return store, made


def crop_iou(pred: Path, truth: str) -> float:
    with rasterio.open(pred) as p, rasterio.open(truth) as t:
        a, b = p.read(1) == 1, t.read(1) == 1
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.slow
def test_only_a_conditioned_model_learns_labels_that_depend_on_the_season(
    tmp_path: Path,
) -> None:
    """The same fields are crop in June and background in December: pixels cannot tell them
    apart, the acquisition time can. Held-out scenes, through predict."""
    store, made = season_store(tmp_path, 12, 128, train=8)
    held_out = made[10:]
    sets = [
        "data.batch_size=8", "train.epochs=4", "train.steps_per_epoch=50", "train.precision=fp32",
        "early_stopping.enabled=false", "model.decoder_channels=[64,32,16,16,8]", "model.scale=0.5",
    ]  # fmt: skip
    scores = {}
    for name, extra in [("plain", []), ("seasons", ["model.metadata=[day_of_year]"])]:
        run = tmp_path / name
        done = seg(*train_args(store, run, *sets, *extra), timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        out = tmp_path / f"pred_{name}"
        scenes = [s for s, _, _ in held_out]
        # What the network learned, without seg predict's per-scene class shares (which alone
        # cut the plain network's false crop in December to 0.10 in one run).
        done = seg(
            "predict", *scenes, "-k", str(run / "best.pt"), "--out", str(out), "-q",
            "--no-adapt-priors",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        summer = [crop_iou(out / f"{Path(s).stem}_mask.tif", m) for s, m, hot in held_out if hot]
        winter = held_out[1]  # all background: any crop there is a false positive
        with rasterio.open(out / f"{Path(winter[0]).stem}_mask.tif") as ds:
            false_crop = float((ds.read(1) == 1).mean())
        scores[name] = (summer[0], false_crop)
    # Conditioned: the June fields found, the December ones left alone.
    assert scores["seasons"][0] > 0.9, scores
    assert scores["seasons"][1] < 0.02, scores
    # Plain: it cannot do both; crop in June and none in December is out of its reach.
    fields = 0.25  # at least this share of a scene is fields (write_seasons)
    plain_iou, plain_false = scores["plain"]
    assert plain_iou < 0.6 or plain_false > fields / 2, scores


def test_checkpoint_codec_predict_exports_and_store(tmp_path: Path, monkeypatch, capsys) -> None:
    store, made = season_store(tmp_path, 5, 64, train=2)
    run = tmp_path / "run"
    extra = ["model.metadata=[day_of_year, hour, lat, lon, gsd]", "model.metadata_dropout=0.2"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, run, *FAST, *extra))
    assert code == 0, err
    assert "conditioned on scene metadata (deep): day_of_year (day_of_year)" in err
    state = load_checkpoint(str(run / "last.pt"))
    assert [f["name"] for f in state["metadata"]["fields"]] == [
        "day_of_year", "hour", "lat", "lon", "gsd"
    ]  # fmt: skip
    assert state["model"]["conditioning"]["widths"] == [2, 2, 2, 2, 1]
    assert "conditioner.head.weight" in state["state_dict"]
    # A new scene with its sidecar: no warning. Without it: one line naming what it lacks.
    scene = made[4][0]
    code, err = seg_inprocess(
        monkeypatch, capsys, "predict", scene, "-k", str(run / "last.pt"), "--out",
        str(tmp_path / "p1"), "-q",
    )  # fmt: skip
    assert code == 0 and "warning" not in err, err
    bare = tmp_path / "bare" / "season_4.tif"
    bare.parent.mkdir()
    bare.write_bytes(Path(scene).read_bytes())
    code, err = seg_inprocess(
        monkeypatch, capsys, "predict", str(bare), "-k", str(run / "last.pt"), "--out",
        str(tmp_path / "p2"), "-q",
    )  # fmt: skip
    assert code == 0, err
    warned = [x for x in err.splitlines() if "warning" in x]
    assert len(warned) == 1 and "no day_of_year, hour in its tags" in warned[0], err
    with rasterio.open(tmp_path / "p1" / "season_4_mask.tif") as a:
        first = a.read(1)
    assert first.shape == (64, 64)
    # Exports carry the codec and take the vector: ONNX Runtime agrees with torch.
    for fmt, suffix in [("onnx", "onnx"), ("safetensors", "safetensors")]:
        path = tmp_path / f"m.{suffix}"
        code, err = seg_inprocess(
            monkeypatch, capsys, "export", str(run / "last.pt"), "--format", fmt, "--out", str(path)
        )
        assert code == 0, err
        out = tmp_path / f"p_{fmt}"
        code, err = seg_inprocess(
            monkeypatch, capsys, "predict", scene, "-k", str(path), "--out", str(out), "-q"
        )
        assert code == 0, err
        with rasterio.open(out / "season_4_mask.tif") as b:
            assert (b.read(1) != first).mean() < 0.01, fmt
    # Store prediction encodes each scene from the metadata `seg tile` kept.
    code, err = seg_inprocess(
        monkeypatch, capsys, "predict", "--store", str(store), "-k", str(run / "last.pt"),
        "--out", str(tmp_path / "probs.zarr"), "-q",
    )  # fmt: skip
    assert code == 0 and "warning" not in err, err


def test_store_predictions_use_the_stored_metadata(tmp_path: Path) -> None:
    """Two scenes, one image, two dates: a conditioned predictor gives two answers."""
    from seg.data.scene_metadata import MetadataCodec, SceneFacts
    from seg.inference.metadata import conditioned
    from seg.metadata_config import MetadataField

    codec = MetadataCodec.fit(
        [MetadataField(name="day_of_year")],
        [SceneFacts("a", {}, {"datetime": "2021-06-01"}, None, (1, 0, 0, 0, -1, 0), 1, 1)],
    )
    seen = []

    def predictor(batch: np.ndarray, meta: np.ndarray | None = None) -> np.ndarray:
        seen.append(meta)
        return batch

    from seg.checkpoint import CheckpointInfo
    from seg.report import SILENT

    model = {"name": "unet_mobilenetv2", "in_channels": 1, "num_classes": 2}
    info = CheckpointInfo(model, ("a", "b"), (1,), (0.0,), (1.0,), 64, metadata=codec.to_json())
    for when in ("2021-06-01", "2021-12-01"):
        facts = SceneFacts("s", {}, {"datetime": when}, None, (1, 0, 0, 0, -1, 0), 1, 1)
        conditioned(predictor, info, facts, SILENT)(np.zeros((1, 1, 2, 2)))
    assert seen[0] is not None and seen[1] is not None
    assert not np.array_equal(seen[0], seen[1])
    plain = CheckpointInfo(info.model, info.class_names, (1,), (0.0,), (1.0,), 64)
    assert conditioned(predictor, plain, facts, SILENT) is predictor


@pytest.mark.slow
def test_kill_and_resume_with_metadata_dropout_is_bit_identical(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import time

    store, _ = season_store(tmp_path, 4, 128, train=2)
    sets = [
        "train.epochs=1", "train.steps_per_epoch=4", "checkpoint.every_steps=1",
        "model.metadata=[day_of_year, lat, gsd]", "model.metadata_dropout=0.5",
    ]  # fmt: skip
    straight = tmp_path / "straight"
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, straight, *sets))
    assert code == 0, err

    killed = tmp_path / "killed"
    proc = seg_popen(*train_args(store, killed, *sets))
    deadline = time.monotonic() + 180
    while (
        not (killed / "latest.json").exists()
        or json.loads((killed / "latest.json").read_text())["step"] < 2
    ):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    resumed = seg(*train_args(store, killed, *sets), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(straight / "last.pt"), weights(killed / "last.pt")
    assert a.keys() == b.keys() and any(k.startswith("conditioner.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bad_metadata_ends_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    store, made = season_store(tmp_path, 4, 64, train=2)
    run = tmp_path / "run"
    cases = [
        (["model.metadata=[off_nadir]"], "'off_nadir' is absent from every train scene"),
        (["model.metadata=[{name: sensor, kind: numerik}]"], "model.metadata.0.kind"),
    ]
    for extra, why in cases:
        code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, run, *FAST, *extra))
        assert one_line_error(code, err) and why in err, err
        assert not run.exists() or not any(run.glob("*.pt"))
    # A value that is not what the field needs, and a time that does not parse: re-tile a
    # store whose sidecars say so.
    folder = Path(made[0][0]).parent
    (folder / "season_0.json").write_text(json.dumps({"datetime": "June 5th", "sun": "high"}))
    bad = tmp_path / "bad.zarr"
    scenes = [s for s, _, _ in made]
    ids = [Path(s).stem for s in scenes]
    tiled = seg(
        "tile", *scenes, "--labels", str(folder / "masks"), "--out", str(bad), "--size", "64",
        "-q", "--set", f"splits.train_scenes={ids[:2]}", "--set", f"splits.val_scenes={ids[2:]}",
        "--set", "classes=[background, crop]",
    )  # fmt: skip
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    for extra, why in [
        (["model.metadata=[sun]"], "scene season_0: metadata field 'sun' is 'high', not a number"),
        (["model.metadata=[hour]"], "scene season_0: acquisition time 'June 5th' does not parse"),
    ]:
        code, err = seg_inprocess(monkeypatch, capsys, *train_args(bad, run, *FAST, *extra))
        assert one_line_error(code, err) and why in err, err
    # Resuming with other fields than the checkpoint's is refused in one line.
    extra = ["model.metadata=[lat]"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, run, *FAST, *extra))
    assert code == 0, err
    other = ["model.metadata=[gsd]"]
    code, err = seg_inprocess(
        monkeypatch, capsys, *train_args(store, run, *FAST, *other), "--resume", "auto"
    )
    assert one_line_error(code, err) and "conditioned on ['lat']" in err, err


def test_warm_start_from_a_plain_model_and_pix2pix_with_metadata(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    store, _ = season_store(tmp_path, 4, 64, train=2)
    plain = tmp_path / "plain"
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, plain, *FAST))
    assert code == 0, err
    run = tmp_path / "cond"
    extra = ["model.metadata=[day_of_year]", f"model.init_from={plain / 'last.pt'}"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, run, *FAST, *extra))
    assert code == 0 and "its metadata conditioner starts" not in err, err
    assert "no metadata conditioner; this run's starts at identity" in err
    gan = tmp_path / "gan"
    extra = ["model.name=pix2pix", "model.metadata=[day_of_year]"]
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, gan, *FAST, *extra))
    assert code == 0, err
    state = load_checkpoint(str(gan / "last.pt"))
    assert "conditioner.head.weight" in state["state_dict"] and state["metadata"]
