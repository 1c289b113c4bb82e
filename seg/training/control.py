"""RUN_DIR/control.json: requests to a running `seg train` from outside its process.

    {"stop": "pruned: miou 0.12 below the median 0.31 at epoch 2"}
    {"lr": 0.0005, "lr_id": 1764670000.25}

A search (seg.jobs.search) writes a stop to end a hopeless trial; the loop reads the file every
second (every 10 s on gs://, where a look is a request), saves last.pt and ends with the reason,
exit 0. `seg ui` writes an LR request: the loop applies it at its next step (the schedule goes
on from the new value) once per `lr_id`, and the checkpoint remembers which one it applied, so
a resumed run does not apply it again. The run folder may be on another machine's disk only
through gs://, so a file is the one channel every placement of a trial shares.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from seg import fs as segfs

CONTROL_FILE = "control.json"


def control_path(run_dir: str) -> str:
    return segfs.join(run_dir, CONTROL_FILE)


def read_control(run_dir: str) -> dict[str, Any]:
    """The requests in RUN_DIR/control.json; {} when there is none or it is not seg's."""
    try:
        data = json.loads(segfs.read_bytes(control_path(run_dir)))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def request_stop(run_dir: str, reason: str) -> None:
    """Ask the run in RUN_DIR to save and stop (written atomically: never read half)."""
    blob = json.dumps({**read_control(run_dir), "stop": reason, "asked": time.time()})
    segfs.write_bytes_atomic(control_path(run_dir), blob.encode())


def request_lr(run_dir: str, lr: float) -> float:
    """Ask the run in RUN_DIR to train on at learning rate `lr`; returns the request's id."""
    asked = time.time()
    blob = json.dumps({**read_control(run_dir), "lr": float(lr), "lr_id": asked})
    segfs.write_bytes_atomic(control_path(run_dir), blob.encode())
    return asked


class ControlWatch:
    """Looks at control.json at most every `interval_s` seconds (not every step: on gs://
    each look is a request)."""

    def __init__(self, run_dir: str, interval_s: float | None = None) -> None:
        self.run_dir = run_dir
        # a local look is one stat: every second; on gs:// one request every 10 s
        self.interval_s = interval_s or (10.0 if segfs.is_remote(run_dir) else 1.0)
        self._next = 0.0
        self.stop: str | None = None
        self.lr: tuple[float, float] | None = None  # (lr_id, lr) of the newest LR request

    def poll(self, *, now: float | None = None) -> str | None:
        """The stop reason once one was asked for, else None (an LR request is kept in `lr`)."""
        now = time.monotonic() if now is None else now
        if self.stop is None and now >= self._next:
            self._next = now + self.interval_s
            data = read_control(self.run_dir)
            self.stop = str(data["stop"]) if data.get("stop") else None
            self.lr = _lr_request(data)
        return self.stop


def _lr_request(data: dict[str, Any]) -> tuple[float, float] | None:
    try:
        lr, ident = float(data["lr"]), float(data["lr_id"])
    except (KeyError, TypeError, ValueError):
        return None
    return (ident, lr) if lr > 0 and math.isfinite(lr) else None
