"""`seg ui` driven in Debian's chromium (headless, through Playwright): start a short run from
the form, watch its curve grow, change its LR, Stop (checkpoint, exit 75), Resume, read the
model page; every request the pages make goes to 127.0.0.1. Screenshots of each page go to
$SEG_SCREENSHOTS (default: the test's tmp folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from conftest import write_window_store
from train_helpers import ROOT, env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running `seg ui` on a free port: (its URL, the runs folder)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    store = write_window_store(tmp_path / "ds.zarr", {"a": "train", "b": "val"}, windows=8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seg", "ui", "--runs", str(runs), "--data", str(store),
         "--configs", str(ROOT / "configs"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"seg ui: (http://127\.0\.0\.1:\d+/)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(1), runs
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def shots() -> Path | None:
    folder = os.environ.get("SEG_SCREENSHOTS")
    return Path(folder) if folder else None


def wait_for(check: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_start_watch_steer_stop_resume_in_a_browser(ui: tuple[str, Path], tmp_path: Path) -> None:
    url, runs = ui
    out = shots() or tmp_path
    out.mkdir(parents=True, exist_ok=True)
    hosts: set[str] = set()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("request", lambda r: hosts.add(str(urlparse(r.url).hostname or r.url[:5])))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "start")
        page.fill("#run-name", "exp")
        for key, value in {
            "data.batch_size": "2", "data.num_workers": "0", "model.scale": "1.0",
            "train.epochs": "500", "train.steps_per_epoch": "15", "train.log_every_steps": "1",
            "checkpoint.every_epochs": "null", "schedule.warmup_steps": "1",
        }.items():  # fmt: skip
            page.fill(f"[id='f-{key}']", value)
        page.screenshot(path=str(out / "ui-start.png"), full_page=True)
        page.click("#start")
        page.wait_for_url(re.compile(r".*/run/exp$"))
        # the curve grows while the run trains, without a reload
        chart = page.locator("#chart-loss")
        page.wait_for_function("Number(document.querySelector('#chart-loss').dataset.points) >= 3",
                               timeout=180_000)  # fmt: skip
        first = int(chart.get_attribute("data-points") or 0)
        page.wait_for_function(
            f"Number(document.querySelector('#chart-loss').dataset.points) > {first + 2}",
            timeout=120_000,
        )
        assert page.inner_text("#state") == "running"
        # run.json's facts, written after the page loaded, arrive with the updates
        page.wait_for_function("document.querySelector('#parameters').textContent !== '-'")
        assert "train /" in page.inner_text("#facts-windows")
        # a new LR from the slider, applied at the next step and logged as an event
        page.locator("#lr-slider").fill("-4")
        assert page.inner_text("#lr-value") == "0.0001"
        page.click("#lr-apply")
        page.wait_for_selector("#events li", timeout=60_000)
        assert "lr set to 0.0001" in page.inner_text("#events")
        page.wait_for_function("document.querySelector('#chart-val').dataset.points >= 1",
                               timeout=120_000)  # fmt: skip
        # the time-lapse shows the newest validation's image | truth | prediction
        page.wait_for_function(
            "(() => { const f = document.querySelector('#frame');"
            " return f && !f.hidden && f.complete && f.naturalWidth > 0; })()",
            timeout=60_000,
        )
        assert page.inner_text("#frame-caption").startswith("epoch ")
        page.screenshot(path=str(out / "ui-run.png"), full_page=True)
        # Stop: SIGTERM, a checkpoint, exit 75
        page.click("#stop")
        page.wait_for_function("document.querySelector('#exit').textContent === 'exit 75'",
                               timeout=120_000)  # fmt: skip
        assert page.inner_text("#state") == "preempted"
        run = runs / "exp"
        stopped = json.loads((run / "latest.json").read_text())["step"]
        assert (run / "last.pt").exists()
        assert json.loads((run / "outcome.json").read_text())["state"] == "preempted"
        # Resume continues from the checkpoint: steps beyond it, none repeated
        page.click("#resume")
        page.wait_for_function(
            f"Number(document.querySelector('#step').textContent) > {stopped + 2}", timeout=180_000
        )
        page.click("#stop")
        page.wait_for_function("document.querySelector('#state').textContent === 'preempted'",
                               timeout=120_000)  # fmt: skip
        lines = [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]
        steps = [x["step"] for x in lines if "loss" in x]
        assert steps == sorted(set(steps)) and steps[-1] > stopped
        assert sum("event" in x for x in lines) == 1  # the LR request is not applied again
        # the model page counts what the checkpoint holds
        page.goto(url + "model/exp")
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
        stats = ("running_mean", "running_var", "num_batches_tracked")  # buffers, not weights
        params = sum(v.numel() for k, v in state["state_dict"].items() if not k.endswith(stats))
        assert page.inner_text("#total-parameters") == f"{params:,}"
        # a preview window's feature maps at a chosen layer
        page.select_option("#act-layer", "encoder.features.2")
        page.click(".activations button")
        page.wait_for_url("**layer=encoder.features.2**")
        page.wait_for_function(
            "document.querySelector('#activations').complete"
            " && document.querySelector('#activations').naturalWidth > 200"
        )
        page.screenshot(path=str(out / "ui-model.png"), full_page=True)
        page.goto(url)
        assert "preempted" in page.inner_text("#runs")
        page.screenshot(path=str(out / "ui-runs.png"), full_page=True)
        page.goto(url + "compare?run=exp")
        page.wait_for_function("document.querySelector('#cmp-val').dataset.points >= 1")
        page.screenshot(path=str(out / "ui-compare.png"), full_page=True)
        page.goto(url + "queue")  # no queue jobs in this runs folder: it says how to add one
        assert page.is_visible("#queue-empty")
        page.wait_for_function("document.querySelector('#queue').dataset.updated", timeout=10_000)
        page.screenshot(path=str(out / "ui-queue.png"), full_page=True)
        browser.close()
    assert errors == []
    assert hosts == {"127.0.0.1"}, hosts


def test_a_predicted_scene_on_the_map(tmp_path: Path, make_scene) -> None:
    """seg predict + seg eval, then the map page in chromium: tiles of the scene and the mask
    load from seg ui (and nothing from anywhere else), the report sits beside the map."""
    from conftest import make_checkpoint
    from train_helpers import seg

    scene, truth = make_scene("scene", 600, 540, folder=tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "model.pt")
    preds = tmp_path / "preds"
    done = seg("predict", str(scene), "-k", str(ckpt), "--out", str(preds), "--probabilities", "-q")
    assert done.returncode == 0, done.stderr
    done = seg("eval", str(preds / "scene_mask.tif"), str(truth))
    assert done.returncode == 0, done.stderr
    (tmp_path / "runs").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "seg", "ui", "--runs", str(tmp_path / "runs"), "--predictions",
         str(preds), "--scenes", str(tmp_path / "scenes"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip
    out = shots() or tmp_path
    hosts: set[str] = set()
    tiles: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        url = re.match(r"seg ui: (http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
        assert url
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("request", lambda r: hosts.add(str(urlparse(r.url).hostname or r.url[:5])))

            def seen(response: object) -> None:
                path = urlparse(response.url).path  # type: ignore[attr-defined]
                if path.startswith("/tiles/"):
                    layer = path.split("/")[2]
                    if response.status == 200:  # type: ignore[attr-defined]
                        tiles[layer] = tiles.get(layer, 0) + 1

            page.on("response", seen)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url.group(1) + "maps")
            page.click("text=scene_mask.tif")

            def loaded(*layers: str) -> bool:
                for _ in range(120):  # Playwright delivers the response events while it waits
                    if all(tiles.get(x, 0) >= 1 for x in layers):
                        return True
                    page.wait_for_timeout(500)
                return False

            assert loaded("scene", "mask"), tiles
            assert "Confusion matrix" in page.inner_text("#report")
            page.select_option("#prob-class", label="building")
            assert loaded("probability"), tiles
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "ui-map.png"), full_page=True)
            browser.close()
        assert errors == []
        assert hosts == {"127.0.0.1"}, hosts
    finally:
        proc.terminate()
        proc.wait(timeout=30)
