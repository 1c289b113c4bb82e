"""The queue page of `seg ui`: the jobs and sweeps in --runs as `seg queue` leaves them (state,
attempts, progress, the leaderboard), and Submit to seg queue from the start form, run for real
on this machine's queue."""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_window_store
from starlette.testclient import TestClient
from train_helpers import TINY, env

from seg.jobs.state import read_state
from seg.ui.app import create_app
from seg.ui.queue import queue_view
from seg.ui.roots import Roots

ROOT = Path(__file__).resolve().parents[2]


def job(runs: Path, name: str, miou: float | None = None, **state: Any) -> None:
    """A job folder as seg.jobs.worker writes it: job.json, and metrics.jsonl for a trained one."""
    folder = runs / name
    folder.mkdir(parents=True)
    facts = {"name": name, "kind": "seg", "run_dir": str(folder), "attempts": 1, **state}
    (folder / "job.json").write_text(json.dumps(facts))
    if miou is not None:
        (folder / "config.yaml").write_text("train: {epochs: 3}\n")
        lines = [{"epoch": e, "step": 4 * (e + 1), "miou": miou * (e + 1) / 3} for e in range(3)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf" content="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def test_jobs_states_attempts_and_the_leaderboard(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    job(runs, "tile", argv=["tile", "s.tif"], state="failed", attempts=2, message="exit 1")
    for i, (lr, miou) in enumerate([(0.01, 0.30), (0.001, 0.60)]):
        job(runs, f"lr/{i:03d}", miou, argv=["train"], state="done", sweep="lr",
            params={"optim.lr": lr})  # fmt: skip
    client = TestClient(create_app(Roots(str(runs))))
    page = client.get("/queue")
    assert page.status_code == 200
    text = html.unescape(page.text)
    row = re.search(r'<tr data-job="tile".*?</tr>', text, re.S)
    assert row and "failed" in row.group(0) and ">2<" in row.group(0) and "exit 1" in row.group(0)
    assert '<a href="/run/lr/001">lr/001</a>' in text  # a train job links to its run page
    assert 'href="/run/tile"' not in text
    board = re.search(r'<table class="runs leaderboard" data-sweep="lr">.*?</table>', text, re.S)
    assert board
    ranked = re.findall(r"<tr><td>(\d)</td><td><a href=\"/run/(lr/\d+)\"", board.group(0))
    assert ranked == [("1", "lr/001"), ("2", "lr/000")]  # by best validation mIoU
    assert "0.6" in board.group(0) and "0.001" in board.group(0)
    part = client.get("/queue?part=1").text
    assert "<html" not in part and 'data-job="tile"' in part  # what the page fetches again
    empty = TestClient(create_app(Roots(str(tmp_path / "none"))))
    assert 'id="queue-empty"' in empty.get("/queue").text


@pytest.mark.slow
def test_submit_to_seg_queue_from_the_start_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=2)
    runs = tmp_path / "runs"
    runs.mkdir()
    roots = Roots(str(runs), data=(str(store),), configs=str(ROOT / "configs"))
    client = TestClient(create_app(roots))
    form = {"csrf": csrf(client), "config": "unet_mobilenetv2.yaml", "name": "q1", "data": "0",
            "how": "queue"}  # fmt: skip
    bad = client.post("/start", data={**form, "optim.lr": "-1"})
    assert bad.status_code == 400 and "optim.lr" in html.unescape(bad.text)
    bad = client.post("/start", data={**form, "name": "a b"})
    assert bad.status_code == 400
    assert list(runs.iterdir()) == []  # nothing written for a refused form
    sets = {k: v for k, v in (s.split("=", 1) for s in TINY)}
    sets.update({"train.epochs": "1", "train.steps_per_epoch": "2",
                 "early_stopping.enabled": "false"})  # fmt: skip
    done = client.post("/start", data={**form, **sets}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/queue"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = read_state(str(runs / "q1")) or {}
        if state.get("state") in ("done", "failed"):
            break
        time.sleep(1)
    assert state.get("state") == "done", (runs / "q1" / "queue.log").read_text()[-2000:]
    assert (runs / "q1" / "best.pt").exists()
    assert state["argv"][:2] == ["train", "--data"] and "train.epochs=1" in state["argv"]
    jobs, _ = queue_view(str(runs))
    (row,) = jobs
    assert (row.name, row.state, row.attempts) == ("q1", "done", 1)
    text = client.get("/queue").text
    assert '<a href="/run/q1">q1</a>' in text and "epoch 1/1" in text
    again = client.post("/start", data={**form, **sets})
    assert again.status_code == 400 and "holds a run already" in again.text
