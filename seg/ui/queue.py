"""The queue page of `seg ui`: the jobs and sweeps `seg queue` runs in the --runs folder (their
job.json files), with state, attempts, progress and each sweep's leaderboard, refreshed in
place; and the start form's "Submit to seg queue", which queues a train job there."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from seg import fs as segfs
from seg.errors import ConfigError
from seg.jobs.jobs_file import NAME
from seg.jobs.state import list_states
from seg.jobs.status import JobRow, job_rows, leaderboard
from seg.ui.actions import Launcher, check_config, local_log
from seg.ui.runs import is_run
from seg.ui.state import page, ui_of


@dataclass(frozen=True)
class Board:
    sweep: str
    header: list[str]
    rows: list[list[Any]]


def queue_view(runs: str) -> tuple[list[JobRow], list[Board]]:
    states = list_states(runs) if segfs.exists(runs) else []
    sweeps = sorted({str(s["sweep"]) for s in states if s.get("sweep")})
    return job_rows(states), [Board(w, *leaderboard(states, w)) for w in sweeps]


async def queue_page(request: Request) -> Response:
    """GET /queue (?part=1: only the tables, which the page fetches every few seconds)."""
    ui = ui_of(request)
    jobs, boards = await asyncio.to_thread(queue_view, ui.roots.runs)
    template = "queue_tables.html" if request.query_params.get("part") else "queue.html"
    return page(request, template, jobs=jobs, boards=boards, scheduler=ui.scheduler)


def jobs_file(name: str, *, config: str | None, data: str, overrides: list[str]) -> str:
    """A JOBS.yaml of one train job (seg.jobs.jobs_file): what `seg queue submit` reads."""
    command = ["train", "--data", data, *(["--config", config] if config else [])]
    for item in overrides:
        command += ["--set", item]
    return yaml.safe_dump({"jobs": [{"name": name, "command": command}]}, sort_keys=False)


def submit(
    launcher: Launcher,
    runs: str,
    name: str,
    *,
    config: str | None,
    overrides: list[str],
    data: str,
    scheduler: str | None,
) -> int:
    """Queue `seg train` as job NAME of `seg queue` in RUNS (its folder RUNS/NAME): checked as
    the CLI checks it, then `seg queue submit` (detached with a scheduler, else the queue runs
    on this machine as a child of the server). The child's pid."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"job name {name!r}: letters, digits, '.', '_' and '-' only")
    check_config(config, overrides)
    run_dir = segfs.join(runs, name)
    if is_run(run_dir):
        raise ConfigError(f"{run_dir} holds a run already: choose a new name (nothing is replaced)")
    spec = segfs.join(runs, ".seg-ui", f"{name}.jobs.yaml")
    segfs.write_bytes_atomic(spec, jobs_file(name, config=config, data=data,
                                             overrides=overrides).encode())  # fmt: skip
    args = [sys.executable, "-m", "seg", "queue", "submit", spec, "--runs", runs]
    if scheduler:
        args += ["--scheduler", scheduler, "--detach"]
    # the queue's own output; the job's is RUNS/NAME/job.log (seg.jobs.worker)
    return launcher.spawn(run_dir, args, log=local_log(run_dir, "queue.log"))
