"""Queue job state on disk: RUNS/NAME/job.json, one per job, local or gs://.

Written atomically by the submitter (queued, skipped) and by the worker running the job
(running, retrying, done, failed), so `seg queue status` can be run from any machine that sees
RUNS. Progress and the best validation metric come from the run's own metrics.jsonl (one line
per epoch, written by `seg train`) and config.yaml.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import yaml

from seg import fs as segfs

STATE_FILE = "job.json"
FINAL = {"done", "failed", "skipped", "pruned"}
METRIC_KEYS = ("val_miou", "miou")  # validation mean IoU as seg train records it


def state_path(run_dir: str) -> str:
    return segfs.join(run_dir, STATE_FILE)


def read_state(run_dir: str) -> dict[str, Any] | None:
    path = state_path(run_dir)
    try:
        data = json.loads(segfs.read_bytes(path))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # written atomically, so only a foreign file gets here: treat as absent
    if not isinstance(data, dict) or not isinstance(data.get("name", ""), str):
        return None  # not a job state seg wrote (an ill-typed job.json): not a job
    state: dict[str, Any] = data
    return state


def write_state(run_dir: str, state: dict[str, Any]) -> None:
    state = {**state, "updated": time.time()}
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    segfs.write_bytes_atomic(state_path(run_dir), data)


def update_state(run_dir: str, **changes: Any) -> dict[str, Any]:
    state = read_state(run_dir) or {}
    state.update(changes)
    write_state(run_dir, state)
    return state


def list_states(runs: str) -> list[dict[str, Any]]:
    """Every job.json under RUNS (jobs at RUNS/NAME, sweep runs at RUNS/SWEEP/NNN)."""
    fs, root = segfs.filesystem(runs)
    found: list[str] = []
    for pattern in (f"{root}/*/{STATE_FILE}", f"{root}/*/*/{STATE_FILE}"):
        found += fs.glob(pattern)
    prefix = "gs://" if str(runs).startswith("gs://") else ""
    states = []
    for path in sorted(set(found)):
        state = read_state(prefix + path.rsplit("/", 1)[0])
        if state and "name" in state:
            states.append(state)
    return states


@dataclass
class Progress:
    epochs_done: int
    epochs_total: int | None
    step: int | None
    best: float | None
    best_epoch: int | None
    metric: str


def read_records(run_dir: str) -> list[dict[str, Any]] | None:
    """The epoch lines of RUN_DIR/metrics.jsonl (a torn line skipped); None if absent."""
    try:
        lines = segfs.read_bytes(segfs.join(run_dir, "metrics.jsonl")).decode().splitlines()
    except FileNotFoundError:
        return None
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def run_progress(run_dir: str) -> Progress | None:
    """Epochs done / planned and the best validation mIoU, from metrics.jsonl; None if absent."""
    records = read_records(run_dir)
    if records is None:
        return None
    total = None
    try:
        cfg = yaml.safe_load(segfs.read_bytes(segfs.join(run_dir, "config.yaml")))
        total = int(cfg["train"]["epochs"]) if cfg["train"].get("epochs") else None
    except (FileNotFoundError, KeyError, TypeError, ValueError, yaml.YAMLError):
        pass
    metric = next((k for k in METRIC_KEYS if any(k in r for r in records)), METRIC_KEYS[-1])
    scored = [(float(r[metric]), r.get("epoch")) for r in records if r.get(metric) is not None]
    best, best_epoch = max(scored, key=lambda s: s[0]) if scored else (None, None)
    step = records[-1].get("step") if records else None
    return Progress(len(records), total, step, best, best_epoch, metric)
