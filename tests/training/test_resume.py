"""`seg train` resume: SIGKILL + --resume auto repeats the straight run exactly; SIGTERM saves a
checkpoint and exits 75; a resumed run's metrics.jsonl reads as one run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from train_helpers import seg, seg_inprocess, seg_popen, train_args, weights

from seg.checkpoint import load_checkpoint


def wait_for(predicate, proc, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "timed out waiting for the training subprocess"
        time.sleep(0.05)


def latest_step(run: Path) -> int:
    try:
        return int(json.loads((run / "latest.json").read_text())["step"])
    except (FileNotFoundError, ValueError):
        return -1


@pytest.mark.slow
def test_kill_and_resume_auto_gives_identical_weights(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=4)
    # Dropout draws from the RNG; hard-window sampling draws epoch 1 by the losses of epoch 0;
    # cut-mix draws by the step (all must come back from the checkpoint for the weights to match).
    sets = [
        "train.epochs=2",
        "train.steps_per_epoch=3",
        "checkpoint.every_steps=1",
        "model.dropout=0.2",
        "data.sampling=hard_windows",
        "augment.cut_mix=0.5",
    ]
    straight = tmp_path / "straight"
    code, err = seg_inprocess(monkeypatch, capsys, *train_args(store, straight, *sets))
    assert code == 0, err

    killed = tmp_path / "killed"
    proc = seg_popen(*train_args(store, killed, *sets))
    wait_for(lambda: latest_step(killed) >= 2, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    assert latest_step(killed) < 6
    resumed = seg(*train_args(store, killed, *sets), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = weights(straight / "last.pt"), weights(killed / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    draws = [load_checkpoint(str(r / "last.pt"))["draws"] for r in (straight, killed)]
    assert draws[0] == draws[1] and draws[0]["epoch"] == 1
    # The resumed run is one run: one metrics line per epoch.
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]


@pytest.mark.slow
def test_sigterm_saves_checkpoint_exits_75_and_resume_appends(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = make_store({"a": "train", "b": "val"}, windows=4)
    sets = ["train.epochs=3", "train.steps_per_epoch=2"]
    run = tmp_path / "run"
    proc = seg_popen(*train_args(store, run, *sets))
    # Wait until the first epoch is logged, then preempt in the middle of the next one.
    wait_for(lambda: (run / "metrics.jsonl").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err[-2000:]
    assert time.monotonic() - t0 < 30
    assert "--resume auto" in err
    stopped_at = latest_step(run)
    assert stopped_at >= 2
    assert (run / "last.pt").exists()

    code, err = seg_inprocess(
        monkeypatch, capsys, *train_args(store, run, *sets), "--resume", "auto"
    )
    assert code == 0, err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert latest_step(run) == 6
    # Nothing left to do: resuming a finished run is a no-op that still succeeds.
    code, err = seg_inprocess(
        monkeypatch, capsys, *train_args(store, run, *sets), "--resume", "auto"
    )
    assert code == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_store_and_run_dir_on_gcs_resume_as_one_run(
    make_store, gcs_bucket: str, monkeypatch, capsys
) -> None:
    from seg import fs as segfs

    local = make_store(windows=2)
    fs, _ = segfs.filesystem(gcs_bucket)
    bucket = gcs_bucket.removeprefix("gs://")
    fs.put(str(local), f"{bucket}/train-test/ds.zarr", recursive=True)
    store, run = f"{gcs_bucket}/train-test/ds.zarr", f"{gcs_bucket}/train-test/run"
    args = train_args(store, run, "train.steps_per_epoch=1", "train.preview_windows=1")
    args += ["--set", "data.num_workers=1"]  # a worker process opens its own gs:// handle
    code, err = seg_inprocess(monkeypatch, capsys, *args, "--set", "train.epochs=1")
    assert code == 0, err
    code, err = seg_inprocess(
        monkeypatch, capsys, *args, "--set", "train.epochs=2", "--resume", "auto"
    )
    assert code == 0, err
    text = segfs.read_bytes(f"{run}/metrics.jsonl").decode()
    assert [json.loads(x)["step"] for x in text.splitlines()] == [1, 2]
    assert json.loads(segfs.read_bytes(f"{run}/latest.json"))["step"] == 2
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/train-test/run")}
    assert {"last.pt", "best.pt", "config.yaml", "tensorboard"} <= names
    assert fs.ls(f"{bucket}/train-test/run/tensorboard")


def test_a_kill_between_an_epochs_line_and_its_checkpoint_does_not_repeat_it(
    tmp_path: Path,
) -> None:
    """The checkpoint resumes inside epoch 1 at step 20 (saved every N steps, or before the
    epoch's own save): the epoch-1 line of step 20 was written after it and must go."""
    from seg.training.logbook import Logbook

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": 0, "step": 10, "miou": 0.1}, {"epoch": 1, "step": 20, "miou": 0.2}]
    text = "".join(json.dumps(r) + "\n" for r in lines)
    (run / "metrics.jsonl").write_text(text)
    log = Logbook(str(run), (20, 1))  # resumes inside epoch 1
    log.close()
    assert [r["epoch"] for r in log.records] == [0]
    assert (run / "metrics.jsonl").read_text() == json.dumps(lines[0]) + "\n"
    (run / "metrics.jsonl").write_text(text)
    log = Logbook(str(run), (20, 2))  # epoch 1 was finished and saved
    log.close()
    assert [r["epoch"] for r in log.records] == [0, 1]
