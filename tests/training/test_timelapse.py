"""The predictions time-lapse: training writes one frame per epoch, `seg timelapse` assembles
them into a GIF or MP4 (local or gs://), captioned from metrics.jsonl; bad input is one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_helpers import seg_inprocess, train_args

from seg import fs as segfs
from seg.training import timelapse


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real three-epoch run of 64 px windows with two preview windows."""
    from conftest import write_window_store
    from train_helpers import seg

    tmp = tmp_path_factory.mktemp("timelapse")
    store = write_window_store(tmp / "ds.zarr", {"a": "train", "b": "val"}, windows=4)
    out = tmp / "run"
    done = seg(*train_args(store, out, "train.epochs=3", "train.steps_per_epoch=2"))
    assert done.returncode == 0, done.stderr
    return out


def test_training_writes_one_frame_per_epoch(trained: Path) -> None:
    found = timelapse.frames(str(trained))
    records = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [f.epoch for f in found] == [r["epoch"] for r in records] and len(found) == 3
    assert [f.step for f in found] == [r["step"] for r in records]
    assert found[-1].miou == pytest.approx(records[-1]["miou"])
    image = Image.open(found[0].path)
    # 2 windows of 64 px as rows of image | truth | prediction
    assert image.size == (3 * 64, 2 * 64) and image.mode == "RGB"
    assert "val mIoU" in timelapse.caption(found[0])


def test_gif_and_mp4_hold_every_epoch(trained: Path, root: str, seg_run) -> None:
    gif = segfs.join(root, "run.gif")
    code, out, err = seg_run("timelapse", trained, "--out", gif, "--fps", "4")
    assert code == 0, err
    assert "3 frames" in out
    image = Image.open(io.BytesIO(segfs.read_bytes(gif)))
    assert image.n_frames == 3 and image.size == (3 * 64, 2 * 64 + 18)  # + the caption bar
    assert image.info["duration"] == 250
    # the last frame shows the stored last frame below its caption
    image.seek(2)
    stored = np.asarray(Image.open(timelapse.frames(str(trained))[-1].path).convert("RGB"))
    shown = np.asarray(image.convert("RGB"))[18:]
    assert np.abs(shown.astype(int) - stored.astype(int)).mean() < 8  # GIF palette rounding

    mp4 = segfs.join(root, "run.mp4")
    code, _, err = seg_run("timelapse", trained, "--out", mp4)
    assert code == 0, err
    data = segfs.read_bytes(mp4)
    assert data[4:8] == b"ftyp"
    import imageio_ffmpeg

    local = Path(str(trained) + ".check.mp4")
    local.write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(local))
    meta = next(reader)
    assert meta["size"] == (3 * 64, 2 * 64 + 18)
    assert sum(1 for _ in reader) == 3


def test_a_large_window_is_stored_reduced(tmp_path: Path) -> None:
    grid = np.zeros((3, 2 * 512, 3 * 512), np.uint8)
    grid[0, :512] = 255  # the first window's row red
    timelapse.write_frame(str(tmp_path), 1, grid)
    image = Image.open(timelapse.frame_path(str(tmp_path), 1))
    assert image.size == (3 * 256, 2 * 256)
    assert np.asarray(image)[0, 0].tolist() == [255, 0, 0]
    assert np.asarray(image)[300, 0].tolist() == [0, 0, 0]


def test_a_torn_metrics_line_only_drops_the_caption(trained: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([*lines[:-1], lines[-1][:10]]) + "\n")
    found = timelapse.frames(str(run))
    assert len(found) == 3 and found[-1].miou is None and found[0].miou is not None
    assert timelapse.caption(found[-1]) == f"epoch {found[-1].epoch}"


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("no-frames", "has no preview frames"),
        ("bad-suffix", "choose a file ending in one of ['.gif', '.mp4']"),
        ("no-run", "no such run folder"),
        ("bad-fps", "positive number of frames per second"),
        ("corrupt-frame", "not a readable PNG frame"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    what: str, message: str, trained: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    out = tmp_path / "run.gif"
    extra: list[str] = []
    if what == "no-frames":
        shutil.rmtree(run / "previews")
    elif what == "bad-suffix":
        out = tmp_path / "run.avi"
    elif what == "no-run":
        run = tmp_path / "nothing"
    elif what == "bad-fps":
        extra = ["--fps", "0"]
    else:
        Path(timelapse.frame_path(str(run), 2)).write_bytes(b"not a png")
    code, err = seg_inprocess(monkeypatch, capsys, "timelapse", str(run), "--out", str(out), *extra)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seg: error:") and message in lines[0], err
    assert not out.exists()


def test_training_keeps_the_preview_windows_as_the_network_sees_them(trained: Path) -> None:
    """RUN/previews/windows.npz (seg ui's activations) holds the windows the frames show."""
    from seg.training.logbook import display_image
    from seg.training.preview_windows import read_windows

    images, meta = read_windows(str(trained))
    assert images.shape == (2, 3, 64, 64) and meta is None
    assert abs(float(images.mean())) < 1.5  # normalised, not raw digital numbers
    frame = np.asarray(Image.open(timelapse.frames(str(trained))[0].path).convert("RGB"))
    for i, window in enumerate(images):
        shown = frame[64 * i : 64 * (i + 1), :64].astype(int)  # the image column of row i
        assert np.abs(shown - display_image(window).transpose(1, 2, 0)).mean() < 2
