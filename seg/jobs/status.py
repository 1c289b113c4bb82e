"""`seg queue status`: the job table and each sweep's leaderboard (rich tables, CSV files),
built from the job state on disk (seg.jobs.state). Nothing here prints: the CLI does."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from seg import fs as segfs
from seg.errors import ConfigError
from seg.jobs.state import FINAL, METRIC_KEYS, Progress, list_states, run_progress


def _progress_text(state: dict[str, Any], progress: Progress | None) -> str:
    if progress is None:
        return "done" if state.get("state") == "done" else "-"
    total = f"/{progress.epochs_total}" if progress.epochs_total else ""
    return f"epoch {progress.epochs_done}{total} (step {progress.step})"


def _best_text(progress: Progress | None) -> str:
    if progress is None or progress.best is None:
        return "-"
    return f"{progress.metric} {progress.best:.4f} (epoch {progress.best_epoch})"


def _state_text(state: dict[str, Any]) -> str:
    """The state, with why for a pruned trial: "pruned (miou 0.12 below the median ...)"."""
    name = str(state.get("state", "?"))
    why = str(state.get("message", "")).removeprefix("pruned: ")
    return f"{name} ({why})" if name == "pruned" and why else name


@dataclass(frozen=True)
class JobRow:
    """One job as `seg queue status` (and `seg ui`'s queue page) shows it."""

    name: str
    state: str  # "pruned (why)" for a pruned trial
    attempts: int
    where: str
    progress: str
    best: str
    note: str
    command: str  # "train", "predict", ... (the seg command) or the program


def job_rows(states: list[dict[str, Any]]) -> list[JobRow]:
    rows = []
    for s in states:
        progress = run_progress(s["run_dir"]) if s.get("kind") == "seg" else None
        where = f"{s.get('host', '')} gpu {s['gpu_id']}" if s.get("gpu_id") else s.get("host", "")
        argv = s.get("argv") or [""]
        rows.append(
            JobRow(
                name=s["name"],
                state=_state_text(s),
                attempts=int(s.get("attempts", 0)),
                where=where or "-",
                progress=_progress_text(s, progress),
                best=_best_text(progress),
                note="" if s.get("state") == "pruned" else str(s.get("message", ""))[:80],
                command=str(argv[0]),
            )
        )
    return rows


def status_table(states: list[dict[str, Any]], runs: str) -> Table:
    table = Table(title=f"seg queue: {runs}", title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("state", overflow="fold")  # "pruned (why)" may be long
    for col in ("attempts", "where", "progress", "best"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for r in job_rows(states):
        table.add_row(r.name, r.state, str(r.attempts), r.where, r.progress, r.best, r.note)
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
                _state_text(s),
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


@dataclass(frozen=True)
class StatusReport:
    """What `seg queue status` shows: the job table, each sweep's leaderboard, the CSV files
    written for finished sweeps (rich renderables: the CLI prints them)."""

    states: list[dict[str, Any]]
    tables: list[Table]
    written: list[str]
    notes: tuple[str, ...] = ()  # one line per search: trials, pruned, best


def status_report(
    runs: str, states: list[dict[str, Any]] | None = None, *, notes: list[str] | None = None
) -> StatusReport:
    """The job table and the sweeps' leaderboards of RUNS; finished sweeps also get
    RUNS/SWEEP/leaderboard.csv. `states` defaults to every job.json under RUNS."""
    if states is None:
        if not segfs.exists(runs):
            raise ConfigError(f"runs folder {runs} does not exist (give the one used with --runs)")
        states = list_states(runs)
    if not states:
        return StatusReport([], [], [])
    tables, written = [status_table(states, runs)], []
    for sweep in sorted({s["sweep"] for s in states if s.get("sweep")}):
        header, rows = leaderboard(states, sweep)
        tables.append(leaderboard_table(sweep, header, rows))
        if all(s.get("state") in FINAL for s in states if s.get("sweep") == sweep):
            written.append(write_leaderboard(runs, sweep, header, rows))
    return StatusReport(states, tables, written, tuple(notes or ()))
