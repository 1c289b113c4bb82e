"""A run folder as `seg ui` shows it, read without trusting it: a torn metrics line, a missing
checkpoint or a foreign file is reported as a problem of that run, never raised.

What a run folder holds (written by `seg train`): config.yaml, run.json (data, parameters,
windows), steps.jsonl (one line per logged step: loss, LR, grad norm, windows/s, memory; and
events), metrics.jsonl (one line per validation), latest.json + last.pt / best.pt, outcome.json
(how its last process ended), .seg-lock while a process trains it, and job.json under
`seg queue`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from seg import fs as segfs
from seg.jobs.state import METRIC_KEYS, read_state
from seg.locks import holder

RUN_MARKERS = ("config.yaml", "metrics.jsonl", "job.json", "run.json")
QUIET_S = 120.0  # a gs:// run whose steps.jsonl is older than this is not shown as running


@dataclass(frozen=True)
class RunSummary:
    name: str  # the folder relative to --runs
    state: str  # running | preempted | finished | diverged | failed | queued | pruned | new
    note: str = ""  # why it ended, or who trains it
    epoch: int | None = None
    step: int | None = None
    best: float | None = None
    metric: str = "miou"
    checkpoint: bool = False
    pid: int | None = None  # the local process training it
    problems: tuple[str, ...] = ()


@dataclass
class Series:
    """What the run page draws: step lines and validation lines, plus what could not be read."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_text(path: str) -> str | None:
    try:
        return segfs.read_bytes(path).decode(errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def read_json(path: str) -> dict[str, Any] | None:
    text = _read_text(path)
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def read_lines(path: str, what: str, problems: list[str]) -> list[dict[str, Any]]:
    """The JSON lines of a file; a line that does not parse is skipped and named in `problems`."""
    text = _read_text(path)
    if text is None:
        return []
    out, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            out.append(_finite(record))
    if bad:
        problems.append(f"{bad} torn line{'s' if bad > 1 else ''} in {what} (skipped)")
    return out


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf become None: JSON for the browser has no NaN."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def series(run_dir: str) -> Series:
    out = Series()
    out.steps = read_lines(segfs.join(run_dir, "steps.jsonl"), "steps.jsonl", out.problems)
    out.epochs = read_lines(segfs.join(run_dir, "metrics.jsonl"), "metrics.jsonl", out.problems)
    return out


def is_run(run_dir: str) -> bool:
    return any(segfs.exists(segfs.join(run_dir, m)) for m in RUN_MARKERS)


def find_runs(root: str, depth: int = 2) -> list[str]:
    """Run folders under root (a sweep's trials one level down), as names relative to it."""
    fs, base = segfs.filesystem(root)
    found: list[str] = []

    def walk(path: str, name: str, left: int) -> None:
        try:
            entries = fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        files = {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries}
        if name and files & set(RUN_MARKERS):
            found.append(name)
        if left == 0:
            return
        for e in sorted(entries, key=lambda e: str(e["name"])):
            child = str(e["name"]).rstrip("/").rsplit("/", 1)[-1]
            if e.get("type") == "directory" and not child.startswith("."):
                walk(str(e["name"]), f"{name}/{child}" if name else child, left - 1)

    walk(base, "", depth)
    return found


def summarise(name: str, run_dir: str, epochs: list[dict[str, Any]] | None = None) -> RunSummary:
    """The run's state and figures; `epochs`: its metrics.jsonl records when already read (their
    torn lines are then reported by whoever read them)."""
    problems: list[str] = []
    if epochs is None:
        epochs = read_lines(segfs.join(run_dir, "metrics.jsonl"), "metrics.jsonl", problems)
    metric = next((k for k in METRIC_KEYS if any(k in r for r in epochs)), "miou")
    scores = [float(r[metric]) for r in epochs if isinstance(r.get(metric), int | float)]
    latest = read_json(segfs.join(run_dir, "latest.json"))
    checkpoint = bool(latest) and segfs.exists(
        segfs.join(run_dir, str(latest.get("checkpoint", "last.pt")) if latest else "last.pt")
    )
    if epochs and not checkpoint:
        problems.append("no checkpoint (latest.json or the file it names is missing)")
    state, note, pid = _state(run_dir, problems)
    last = epochs[-1] if epochs else {}
    return RunSummary(
        name=name,
        state=state,
        note=note,
        epoch=last.get("epoch"),
        step=last.get("step"),
        best=max(scores) if scores else None,
        metric=metric,
        checkpoint=checkpoint,
        pid=pid,
        problems=tuple(problems),
    )


def _state(run_dir: str, problems: list[str]) -> tuple[str, str, int | None]:
    owner = holder(run_dir)
    if owner:
        return "running", f"pid {owner.get('pid')} on {owner.get('host')}", owner.get("pid")
    outcome = read_json(segfs.join(run_dir, "outcome.json"))
    job = read_state(run_dir)
    if job and job.get("state") in ("queued", "retrying", "pruned", "skipped"):
        return str(job["state"]), str(job.get("message", "")), None
    if segfs.is_remote(run_dir) and _recent(run_dir):
        return "running", "steps.jsonl written in the last 2 minutes", None
    if outcome:
        state = str(outcome.get("state", "failed"))
        note = str(outcome.get("reason") or outcome.get("error") or "")
        return state, note, None
    if segfs.exists(segfs.join(run_dir, "config.yaml")):
        problems.append("no outcome.json: the process ended without saying how (killed?)")
        return "stopped", "", None
    return "new", "", None


def _recent(run_dir: str) -> bool:
    fs, path = segfs.filesystem(segfs.join(run_dir, "steps.jsonl"))
    try:
        modified = fs.modified(path)
    except (FileNotFoundError, NotImplementedError, OSError):
        return False
    return time.time() - modified.timestamp() < QUIET_S


def list_runs(root: str) -> list[RunSummary]:
    return [summarise(name, segfs.join(root, name)) for name in find_runs(root)]
