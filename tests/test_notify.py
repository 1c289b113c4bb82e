"""Notifications when a run ends: a webhook and an e-mail, against real servers on 127.0.0.1;
secrets come from the environment and appear nowhere; a failing notifier only warns."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from train_helpers import seg_inprocess, train_args

SECRET = "tok-3f9c2a"  # in the webhook URL, as Slack/Teams/ntfy tokens are

pytestmark = pytest.mark.slow  # several real training runs


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server recording every JSON body POSTed to it."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            got.append({"path": self.path, **json.loads(self.rfile.read(length))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook/{SECRET}", got
    server.shutdown()


def short(store: Path, out: Path, *extra: str) -> list[str]:
    return train_args(
        store, out, "train.epochs=1", "train.steps_per_epoch=1", "augment.crop=null", *extra
    )


def test_a_finished_run_posts_its_result_and_the_url_stays_secret(
    make_store, tmp_path: Path, monkeypatch, capsys, webhook
) -> None:
    url, got = webhook
    monkeypatch.setenv("SEG_TEST_HOOK", url)
    store = make_store({"a": "train", "b": "val"}, windows=2)
    out = tmp_path / "run"
    code, err = seg_inprocess(
        monkeypatch, capsys, *short(store, out, "notify.webhook_env=SEG_TEST_HOOK")
    )
    assert code == 0, err
    assert len(got) == 1 and got[0]["path"] == f"/hook/{SECRET}"
    body = got[0]
    assert body["event"] == "finished" and body["run"] == str(out)
    assert body["checkpoint"] == str(out / "best.pt") and "miou" in body["best"]
    assert body["seconds"] > 0 and body["step"] == 1
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the secret is in {path}"
    assert SECRET not in err


def test_a_failed_run_is_reported_and_a_dead_webhook_only_warns(
    make_store, tmp_path: Path, monkeypatch, capsys, webhook
) -> None:
    url, got = webhook
    monkeypatch.setenv("SEG_TEST_HOOK", url)
    code, err = seg_inprocess(
        monkeypatch, capsys,
        *short(tmp_path / "no_store.zarr", tmp_path / "run", "notify.webhook_env=SEG_TEST_HOOK"),
    )  # fmt: skip
    assert (
        code == 1 and got and got[0]["event"] == "failed" and "no window store" in got[0]["error"]
    )
    # Nobody listens on the webhook: the run still succeeds, with one warning line.
    monkeypatch.setenv("SEG_TEST_HOOK", f"http://127.0.0.1:9/hook/{SECRET}")
    store = make_store({"a": "train", "b": "val"}, windows=2)
    code, err = seg_inprocess(
        monkeypatch, capsys, *short(store, tmp_path / "run2", "notify.webhook_env=SEG_TEST_HOOK")
    )
    assert code == 0, err
    warned = [line for line in err.splitlines() if "notify:" in line]
    assert len(warned) == 1 and "webhook ($SEG_TEST_HOOK) failed" in warned[0]
    assert SECRET not in err


def test_an_email_goes_through_a_local_smtp_server(
    make_store, tmp_path: Path, monkeypatch, capsys
) -> None:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        store = make_store({"a": "train", "b": "val"}, windows=2)
        out = tmp_path / "run"
        extra = [
            "notify.smtp.host=127.0.0.1", f"notify.smtp.port={port}",
            "notify.smtp.sender=seg@example.org", "notify.smtp.to=[team@example.org]",
            "notify.smtp.starttls=false", "notify.on=[finished]",
        ]  # fmt: skip
        code, err = seg_inprocess(monkeypatch, capsys, *short(store, out, *extra))
        assert code == 0, err
    finally:
        controller.stop()
    assert len(received) == 1
    mail = received[0]
    assert mail.rcpt_tos == ["team@example.org"] and mail.mail_from == "seg@example.org"
    import email
    from email import policy

    parsed = email.message_from_bytes(mail.content, policy=policy.default)
    assert " ".join(str(parsed["Subject"]).split()) == f"seg: run {out} finished"
    body = json.loads(parsed.get_content())
    assert body["event"] == "finished" and body["run"] == str(out)


def test_a_queue_job_that_ends_is_told_once(tmp_path: Path, monkeypatch, webhook) -> None:
    """JOBS.yaml `notify:` reaches every job; each one says when it ends (done, or failed after
    its retries), from the worker that ran it."""
    import sys

    from seg.jobs.jobs_file import load_jobs
    from seg.jobs.worker import JobFailed, run_job

    url, got = webhook
    monkeypatch.setenv("SEG_TEST_HOOK", url)
    jobs_yaml = tmp_path / "JOBS.yaml"
    jobs_yaml.write_text(
        "notify: {webhook_env: SEG_TEST_HOOK}\n"
        "jobs:\n"
        f"  - {{name: ok, program: [{sys.executable}, -c, 'pass']}}\n"
        f"  - {{name: bad, program: [{sys.executable}, -c, 'raise SystemExit(3)'], retries: 0}}\n"
    )
    _, jobs = load_jobs(str(jobs_yaml), str(tmp_path / "runs"))
    by_name = {j.name: j for j in jobs}
    run_job(by_name["ok"].to_dict(), str(tmp_path))
    with pytest.raises(JobFailed):
        run_job(by_name["bad"].to_dict(), str(tmp_path))
    assert [(b["job"], b["event"]) for b in got] == [("ok", "finished"), ("bad", "failed")]
    assert got[1]["error"].startswith("exit 3") and got[0]["attempts"] == 1
