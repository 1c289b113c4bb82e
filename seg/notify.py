"""Telling someone when an overnight run ends: a webhook (JSON POST) and/or an e-mail (SMTP).

Configured by a `notify:` section (train configs; JOBS.yaml jobs carry theirs in their train
config). Secrets never sit in a config: the webhook URL (which usually holds a token) and the
SMTP password are read from environment variables named in it, so neither reaches logs,
`config.yaml` or checkpoints. A notifier that fails gives one warning and never fails the run.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import urllib.request
from email.message import EmailMessage
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENTS = ("finished", "failed", "diverged", "preempted")
Event = Literal["finished", "failed", "diverged", "preempted"]


def _every_event() -> list[Event]:
    return ["finished", "failed", "diverged", "preempted"]


class SmtpSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    sender: str  # the From address
    to: list[str] = Field(min_length=1)
    user: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    starttls: bool = True


class NotifySection(BaseModel):
    """Where to say that a run finished, failed, diverged (NaN) or was preempted."""

    model_config = ConfigDict(extra="forbid")

    # The name of an environment variable holding the webhook URL (not the URL itself).
    webhook_env: str | None = None
    smtp: SmtpSection | None = None
    on: list[Event] = Field(default_factory=lambda: _every_event())
    timeout_s: Annotated[float, Field(gt=0.0)] = 10.0


def message(event: str, run: str, **facts: Any) -> dict[str, Any]:
    """The JSON body of a notification (also the e-mail's text)."""
    return {"event": event, "run": run, "host": socket.gethostname(), **facts}


def send(section: NotifySection | None, body: dict[str, Any]) -> list[str]:
    """Send `body` wherever `section` says, for the events it lists; the warnings of what failed
    (never raises: a notification must not fail the run it reports)."""
    if section is None or body.get("event") not in section.on:
        return []
    warnings = []
    if section.webhook_env:
        url = os.environ.get(section.webhook_env, "")
        if not url:
            warnings.append(f"notify: ${section.webhook_env} is not set; no webhook sent")
        else:
            try:
                _post(url, body, section.timeout_s)
            except Exception as exc:  # any failure is a warning, with the URL kept secret
                warnings.append(f"notify: webhook (${section.webhook_env}) failed: {_why(exc)}")
    if section.smtp is not None:
        try:
            _mail(section.smtp, body, section.timeout_s)
        except Exception as exc:
            warnings.append(f"notify: e-mail via {section.smtp.host} failed: {_why(exc)}")
    return warnings


def _post(url: str, body: dict[str, Any], timeout: float) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise OSError(f"HTTP {response.status}")


def _mail(smtp: SmtpSection, body: dict[str, Any], timeout: float) -> None:
    mail = EmailMessage()
    mail["Subject"] = f"seg: run {body.get('run')} {body.get('event')}"
    mail["From"], mail["To"] = smtp.sender, ", ".join(smtp.to)
    mail.set_content(json.dumps(body, indent=2))
    with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as server:
        if smtp.starttls:
            server.starttls()
        if smtp.user:
            password = os.environ.get(smtp.password_env or "", "")
            server.login(smtp.user, password)
        server.send_message(mail)


def _why(exc: BaseException) -> str:
    """One line, without anything that could hold the secret URL."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:120]}" if "://" not in text else type(exc).__name__
