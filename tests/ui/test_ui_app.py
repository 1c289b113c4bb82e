"""`seg ui` without a browser: what the pages and endpoints say about run folders (broken ones
included), the token, CSRF, path confinement, the start form's checks, the model render."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from seg.config import TrainConfig
from seg.ui.app import create_app
from seg.ui.config_form import form_fields, overrides, yaml_comments
from seg.ui.roots import Refused, Roots, confine
from seg.ui.runs import list_runs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = str(ROOT / "configs")


def write_run(run: Path, *, epochs: int = 2, torn: bool = False, checkpoint: bool = True) -> Path:
    """A run folder as `seg train` leaves it (without the weights)."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("train: {epochs: 5}\n")
    lines = [
        json.dumps({"epoch": e, "step": 10 * (e + 1), "miou": 0.4 + 0.1 * e, "train_loss": 1.0})
        for e in range(epochs)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + ('\n{"epoch": 9, "st' if torn else "\n"))
    steps = [json.dumps({"step": s, "time": s, "loss": 1.0 / s, "lr": 1e-3}) for s in range(1, 21)]
    (run / "steps.jsonl").write_text("\n".join(steps) + "\n")
    if checkpoint:
        (run / "last.pt").write_bytes(b"x")
        (run / "latest.json").write_text(json.dumps({"checkpoint": "last.pt", "step": 20}))
    (run / "outcome.json").write_text(json.dumps({"state": "finished", "reason": "epochs done"}))
    return run


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    runs = tmp_path / "runs"
    write_run(runs / "good")
    write_run(runs / "broken", torn=True, checkpoint=False)
    return TestClient(create_app(Roots(str(runs), configs=CONFIGS)))


def csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf" content="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def test_runs_page_shows_a_broken_run_as_broken(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-run="good"' in page.text and 'data-run="broken"' in page.text
    assert "1 torn line in metrics.jsonl" in page.text
    assert "no checkpoint" in page.text
    series = client.get("/api/series/broken").json()
    assert [r["epoch"] for r in series["epochs"]] == [0, 1]  # the torn line skipped, not fatal
    assert series["run"]["state"] == "finished" and series["run"]["best"] == pytest.approx(0.5)
    assert len(series["steps"]) == 20


def test_state_of_a_run_killed_without_an_outcome(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "killed")
    (run / "outcome.json").unlink()
    (run / "metrics.jsonl").write_bytes(b"\xff\xfe garbage")
    (summary,) = list_runs(str(tmp_path / "runs"))
    assert summary.state == "stopped"
    assert any("torn line" in p for p in summary.problems)
    assert any("without saying how" in p for p in summary.problems)


def test_paths_outside_the_runs_folder_are_refused(tmp_path: Path, client: TestClient) -> None:
    root = tmp_path / "runs"
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "link")
    for name in ("../secret", "/etc", "good/../../secret", "link", "a\\b", "", "gs://b/x"):
        with pytest.raises(Refused):
            confine(str(root), name)
    assert confine(str(root), "good") == os.path.realpath(root / "good")
    for url in ("/run/..%2Fsecret", "/api/series/link", "/run/nothere"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Traceback" not in response.text
    assert "leads outside" in client.get("/api/series/link").json()["error"]


def test_a_token_is_checked_on_every_request(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "good")
    app = create_app(Roots(str(tmp_path / "runs")), token="s3cret")
    client = TestClient(app)
    assert client.get("/").status_code == 401
    assert client.get("/api/series/good").status_code == 401
    assert client.get("/static/seg.js").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/api/series/good").status_code == 200  # the cookie it set


def test_posts_need_the_pages_csrf_token(client: TestClient) -> None:
    assert client.post("/action/stop/good").status_code == 403
    assert client.post("/action/stop/good", headers={"x-csrf-token": "nope"}).status_code == 403
    assert client.post("/start", data={"name": "x", "data": "0"}).status_code == 403
    ok = client.post("/action/stop/good", headers={"x-csrf-token": csrf(client)})
    assert ok.status_code == 400 and "is not training" in ok.json()["error"]


def test_the_start_form_checks_like_the_cli_and_writes_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    client = TestClient(
        create_app(Roots(str(runs), data=(str(tmp_path / "nostore"),), configs=CONFIGS))
    )
    page = client.get("/start")
    assert page.status_code == 200
    assert 'name="optim.lr"' in page.text and "lr-slider" in page.text
    assert "unreadable" in page.text  # the store that is not there
    token = csrf(client)
    form = {"csrf": token, "config": "unet_mobilenetv2.yaml", "name": "exp", "data": "0"}
    bad = client.post("/start", data={**form, "optim.lrr": "3"})
    assert bad.status_code == 400 and "unknown key &#39;optim.lrr&#39;" in bad.text
    bad = client.post("/start", data={**form, "optim.lr": "-1"})
    assert bad.status_code == 400 and "&#39;optim.lr&#39;" in bad.text
    bad = client.post("/start", data={**form, "name": "../up"})
    assert bad.status_code == 400 and "is not a path inside" in bad.text
    assert list(runs.iterdir()) == []


def test_the_form_has_every_key_of_the_schema_with_the_yamls_comments() -> None:
    config = os.path.join(CONFIGS, "unet_mobilenetv2.yaml")
    fields = form_fields(config)
    keys = {f.key for f in fields}
    for section, info in TrainConfig.model_fields.items():
        model: Any = info.annotation
        if hasattr(model, "model_fields"):
            assert {f"{section}.{k}" for k in model.model_fields} <= keys
    by_key = {f.key: f for f in fields}
    assert by_key["model.scale"].value == "auto"  # the YAML's value, not the schema default
    assert by_key["schedule.name"].kind == "choice" and "cosine" in by_key["schedule.name"].choices
    assert by_key["train.deterministic"].kind == "boolean"
    assert "batch" in by_key["data.batch_size"].comment
    assert overrides({"optim.lr": "0.001", "data.batch_size": "6", "name": "x"}, fields) == [
        "data.batch_size=6"
    ]
    assert yaml_comments("a:\n  b: 1  # why\n  c: 2\n") == {"a.b": "why"}


def test_seg_ui_refuses_a_port_in_use(tmp_path: Path, seg_run: Any) -> None:
    (tmp_path / "runs").mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        code, _, err = seg_run("ui", "--runs", tmp_path / "runs", "--port", port)
    finally:
        busy.close()
    assert code == 1
    assert err.strip().splitlines() == [f"seg: error: port {port} on 127.0.0.1 is in use (another"
                                        " seg ui?); choose another with --port"]  # fmt: skip
    code, _, err = seg_run("ui", "--runs", tmp_path / "missing", "--port", 0)
    assert code == 1 and "--runs" in err and "does not exist" in err


def test_vendored_assets_are_whole_and_pages_load_nothing_from_outside() -> None:
    static = ROOT / "seg" / "ui" / "static"
    sums = (static / "vendor" / "SHA256SUMS").read_text().split("\n")
    import hashlib

    for line in filter(None, sums):
        digest, name = line.split()
        assert hashlib.sha256((static / "vendor" / name).read_bytes()).hexdigest() == digest, name
    for page in (ROOT / "seg" / "ui" / "templates").glob("*.html"):
        for url in re.findall(r'(?:src|href)="([^"]+)"', page.read_text()):
            assert url.startswith(("/", "data:", "{{")), (page.name, url)
