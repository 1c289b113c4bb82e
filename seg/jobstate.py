"""Queue job state on disk: RUNS/NAME/job.json, one per job, local or gs://.

Written atomically by the submitter (queued, skipped) and by the worker running the job
(running, retrying, done, failed), so `seg queue status` can be run from any machine that sees
RUNS. Progress and the best validation metric come from the run's own metrics.jsonl (one line
per epoch, written by `seg train`) and config.yaml.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from seg import fs as segfs

STATE_FILE = "job.json"
FINAL = {"done", "failed", "skipped"}
METRIC_KEYS = ("val_miou", "miou")  # validation mean IoU as seg train records it


def state_path(run_dir: str) -> str:
    return segfs.join(run_dir, STATE_FILE)


def read_state(run_dir: str) -> dict[str, Any] | None:
    path = state_path(run_dir)
    try:
        data: dict[str, Any] = json.loads(segfs.read_bytes(path))
        return data
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None  # written atomically, so only a foreign file gets here: treat as absent


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


def run_progress(run_dir: str) -> Progress | None:
    """Epochs done / planned and the best validation mIoU, from metrics.jsonl; None if absent."""
    path = segfs.join(run_dir, "metrics.jsonl")
    try:
        lines = segfs.read_bytes(path).decode().splitlines()
    except FileNotFoundError:
        return None
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    total = None
    try:
        cfg = yaml.safe_load(segfs.read_bytes(segfs.join(run_dir, "config.yaml")))
        total = int(cfg["train"]["epochs"])
    except (FileNotFoundError, KeyError, TypeError, ValueError, yaml.YAMLError):
        pass
    metric = next((k for k in METRIC_KEYS if any(k in r for r in records)), METRIC_KEYS[-1])
    scored = [(float(r[metric]), r.get("epoch")) for r in records if r.get(metric) is not None]
    best, best_epoch = max(scored, key=lambda s: s[0]) if scored else (None, None)
    step = records[-1].get("step") if records else None
    return Progress(len(records), total, step, best, best_epoch, metric)


def _progress_text(state: dict[str, Any], progress: Progress | None) -> str:
    if progress is None:
        return "done" if state.get("state") == "done" else "-"
    total = f"/{progress.epochs_total}" if progress.epochs_total else ""
    return f"epoch {progress.epochs_done}{total} (step {progress.step})"


def _best_text(progress: Progress | None) -> str:
    if progress is None or progress.best is None:
        return "-"
    return f"{progress.metric} {progress.best:.4f} (epoch {progress.best_epoch})"


def console() -> Console:
    """stdout; wide enough for the tables when piped (rich assumes 80 columns then)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def status_table(states: list[dict[str, Any]], runs: str) -> Table:
    table = Table(title=f"seg queue: {runs}", title_justify="left")
    for col in ("job", "state", "attempts", "where", "progress", "best"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for s in states:
        progress = run_progress(s["run_dir"]) if s.get("kind") == "seg" else None
        where = f"{s.get('host', '')} gpu {s['gpu_id']}" if s.get("gpu_id") else s.get("host", "")
        table.add_row(
            s["name"],
            s.get("state", "?"),
            str(s.get("attempts", 0)),
            where or "-",
            _progress_text(s, progress),
            _best_text(progress),
            s.get("message", "")[:80],
        )
    return table


def leaderboard(states: list[dict[str, Any]], sweep: str) -> tuple[list[str], list[list[Any]]]:
    """Runs of one sweep ranked by best validation mIoU: (header, rows)."""
    runs = [s for s in states if s.get("sweep") == sweep]
    keys = list(runs[0].get("params", {})) if runs else []
    scored = []
    for s in runs:
        p = run_progress(s["run_dir"])
        best = p.best if p else None
        scored.append((best, s, p))
    scored.sort(key=lambda t: (t[0] is None, -(t[0] or 0.0), t[1]["name"]))
    metric = next((p.metric for _, _, p in scored if p), METRIC_KEYS[-1])
    header = ["rank", "run", *keys, f"best_{metric}", "best_epoch", "epochs", "state"]
    rows = []
    for rank, (best, s, p) in enumerate(scored, start=1):
        params = s.get("params", {})
        rows.append(
            [
                rank,
                s["name"],
                *(params.get(k) for k in keys),
                None if best is None else round(best, 6),
                p.best_epoch if p else None,
                p.epochs_done if p else 0,
                s.get("state"),
            ]
        )
    return header, rows


def write_leaderboard(runs: str, sweep: str, header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    path = segfs.join(runs, sweep, "leaderboard.csv")
    segfs.write_bytes_atomic(path, buf.getvalue().encode())
    return path


def leaderboard_table(sweep: str, header: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=f"leaderboard: sweep {sweep}", title_justify="left")
    for col in header:
        table.add_column(col, justify="right" if col.startswith("best") else "left")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


def report_leaderboards(runs: str, states: list[dict[str, Any]], console: Console) -> list[str]:
    """Show each sweep's leaderboard; finished sweeps also get RUNS/SWEEP/leaderboard.csv."""
    written = []
    for sweep in sorted({s["sweep"] for s in states if s.get("sweep")}):
        header, rows = leaderboard(states, sweep)
        console.print(leaderboard_table(sweep, header, rows))
        if all(s.get("state") in FINAL for s in states if s.get("sweep") == sweep):
            written.append(write_leaderboard(runs, sweep, header, rows))
    return written


def show_status(runs: str) -> list[dict[str, Any]]:
    """`seg queue status`: the job table and the sweeps' leaderboards, on stdout."""
    from seg.errors import ConfigError

    if not segfs.exists(runs):
        raise ConfigError(f"runs folder {runs} does not exist (give the one used with --runs)")
    states = list_states(runs)
    out = console()
    if not states:
        out.print(f"no queue jobs in {runs}")
        return states
    out.print(status_table(states, runs))
    for path in report_leaderboards(runs, states, out):
        out.print(f"wrote {path}")
    return states
