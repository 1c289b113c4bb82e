"""JOBS.yaml for `seg queue submit`: seg commands, programs and sweeps, flattened into jobs.

    runs: gs://bucket/runs/night1          # optional; --runs wins
    jobs:
      - name: tile
        command: tile scenes/ --labels labels/ --out {runs}/ds.zarr
      - name: exp1                         # train: --out {run_dir} and --resume auto are added
        command: train --config configs/unet_mobilenetv2.yaml --data {runs}/ds.zarr
        after: [tile]
      - name: masks
        command: predict new/ --checkpoint {runs}/exp1/best.pt --out {run_dir}/masks
        after: [exp1]
    sweeps:
      - name: lr                           # runs lr/000, lr/001, ...: one per grid point
        config: configs/unet_mobilenetv2.yaml
        data: "{runs}/ds.zarr"
        set: [train.epochs=20]             # the same for every run
        grid: {optim.lr: [0.001, 0.0003], data.batch_size: [8, 16]}
        after: [tile]
      - name: search                       # trials chosen by Optuna and pruned early; the keys:
        search: optuna                     # seg.jobs.search_config
        config: configs/unet_mobilenetv2.yaml
        data: "{runs}/ds.zarr"

Placeholders: {runs} (the runs folder), {run_dir} (this job's folder), {name}. A job's state,
log and (for train) outputs live in RUNS/NAME. `program:` runs any executable instead of seg.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from seg import fs as segfs
from seg.config import Section, read_yaml, validate_dict
from seg.errors import ConfigError
from seg.jobs.search_config import Retries, SweepEntry, check_sweep
from seg.notify import NotifySection

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
GPU_COMMANDS = {"train", "predict", "eval", "export"}


class JobEntry(Section):
    name: str
    command: str | list[str] | None = None  # a seg command line, without the leading `seg`
    program: list[str] | None = None  # or any program: [executable, arg, ...]
    gpu: bool | None = None  # default: true for train/predict/eval/export
    after: list[str] = Field(default_factory=list)
    retries: Retries = 1  # extra attempts after a real failure (exit code not 0 or 75)


class JobsFile(Section):
    runs: str | None = None
    # Said for every job that ends (done, or failed after its retries): seg.notify.
    notify: NotifySection | None = None
    preemptions: Annotated[int, Field(ge=0, le=1000)] = 20  # exit-75 restarts allowed per job
    jobs: list[JobEntry] = Field(default_factory=list)
    sweeps: list[SweepEntry] = Field(default_factory=list)


@dataclass
class Job:
    """One unit of work: `argv` for `seg` (kind "seg") or a whole program argv (kind "program")."""

    name: str
    kind: str
    argv: list[str]
    run_dir: str
    gpu: bool
    after: list[str] = field(default_factory=list)
    retries: int = 1
    preemptions: int = 20
    sweep: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] | None = None  # a NotifySection, as plain data (jobs cross processes)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def format_value(value: Any) -> str:
    """A grid value as `--set` expects it (parsed back as YAML): 0.001, true, [1, 2], text."""
    return value if isinstance(value, str) else json.dumps(value)


def grid_points(grid: dict[str, list[Any]], where: str) -> list[dict[str, Any]]:
    """The grid in key order: {a: [1, 2], b: [x]} -> [{a: 1, b: x}, {a: 2, b: x}]."""
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid key '{key}' needs a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _fill(args: list[str], runs: str, run_dir: str, name: str) -> list[str]:
    subs = {"{runs}": runs.rstrip("/"), "{run_dir}": run_dir, "{name}": name}
    out = []
    for arg in args:
        for key, value in subs.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


def _train_defaults(argv: list[str], run_dir: str) -> list[str]:
    """`seg train` jobs write to their run folder and always resume: a retried job continues."""
    if not argv or argv[0] != "train":
        return argv
    names = {a.split("=", 1)[0] for a in argv}
    if not names & {"--out", "-o"}:
        argv = [*argv, "--out", run_dir]
    if "--resume" not in names:
        argv = [*argv, "--resume", "auto"]
    return argv


def _entry_job(entry: JobEntry, runs: str, preemptions: int) -> Job:
    where = f"job '{entry.name}'"
    if (entry.command is None) == (entry.program is None):
        raise ConfigError(f"{where}: give exactly one of 'command' (seg ...) or 'program'")
    run_dir = segfs.join(runs, entry.name)
    if entry.command is not None:
        import shlex

        words = shlex.split(entry.command) if isinstance(entry.command, str) else entry.command
        if not words:
            raise ConfigError(f"{where}: 'command' is empty (e.g. command: train --config ...)")
        if words[0] == "seg":
            words = words[1:]
        argv = _train_defaults(_fill(words, runs, run_dir, entry.name), run_dir)
        gpu = entry.gpu if entry.gpu is not None else bool(argv) and argv[0] in GPU_COMMANDS
        kind = "seg"
    else:
        argv = _fill(entry.program or [], runs, run_dir, entry.name)
        if not argv:
            raise ConfigError(f"{where}: 'program' is empty (e.g. program: [python, prep.py])")
        gpu, kind = bool(entry.gpu), "program"
    return Job(entry.name, kind, argv, run_dir, gpu, entry.after, entry.retries, preemptions)


def sweep_job(sweep: SweepEntry, runs: str, preemptions: int, i: int, *,
              params: dict[str, Any]) -> Job:  # fmt: skip
    """Run `i` of a sweep (grid point or search trial): RUNS/SWEEP/NNN, its params as --set."""
    name = f"{sweep.name}/{i:03d}"
    run_dir = segfs.join(runs, name)
    sets = [*sweep.set, *(f"{k}={format_value(v)}" for k, v in params.items())]
    words = ["train", "--config", sweep.config, "--data", sweep.data, *sweep.args]
    words += [w for s in sets for w in ("--set", s)]
    argv = _train_defaults(_fill(words, runs, run_dir, name), run_dir)
    return Job(name, "seg", argv, run_dir, sweep.gpu, list(sweep.after), sweep.retries,
               preemptions, sweep=sweep.name, params=params)  # fmt: skip


@dataclass
class Search:
    """A `search: optuna` sweep: its trials are made while it runs (seg.jobs.search)."""

    sweep: SweepEntry
    runs: str
    preemptions: int
    notify: dict[str, Any] | None = None
    upstream: list[str] = field(default_factory=list)  # the jobs of `after`, resolved

    def job(self, number: int, params: dict[str, Any]) -> Job:
        job = sweep_job(self.sweep, self.runs, self.preemptions, number, params=params)
        job.notify = self.notify
        return job


@dataclass
class Plan:
    """JOBS.yaml read: the runs folder, the jobs in dependency order, the searches."""

    runs: str
    jobs: list[Job]
    searches: list[Search]


def _ordered(jobs: list[Job], groups: dict[str, list[str]]) -> list[Job]:
    """Jobs with `after` names (job or sweep names) resolved, upstream before downstream."""
    by_name = {j.name: j for j in jobs}
    for job in jobs:
        resolved: list[str] = []
        for ref in job.after:
            if ref not in groups:
                raise ConfigError(f"job '{job.name}': after: unknown job or sweep '{ref}'")
            resolved += groups[ref]
        job.after = resolved
    done: list[Job] = []
    state: dict[str, str] = {}

    def visit(job: Job, path: list[str]) -> None:
        if state.get(job.name) == "done":
            return
        if state.get(job.name) == "visiting":
            raise ConfigError(f"jobs depend on each other in a circle: {' -> '.join(path)}")
        state[job.name] = "visiting"
        for up in job.after:
            visit(by_name[up], [*path, up])
        state[job.name] = "done"
        done.append(job)

    for job in jobs:
        visit(job, [job.name])
    return done


def load_jobs(path: str, runs: str | None) -> tuple[str, list[Job]]:
    """Read JOBS.yaml -> (runs folder, jobs in an order where every `after` comes first)."""
    plan = read_plan(path, runs)
    return plan.runs, plan.jobs


def read_plan(path: str, runs: str | None) -> Plan:
    """Read JOBS.yaml: jobs and grid points in dependency order, and the searches."""
    spec = validate_dict(JobsFile, read_yaml(path), path)
    runs = runs or spec.runs or "runs"
    jobs: list[Job] = []
    groups: dict[str, list[str]] = {}
    searches: list[Search] = []
    for entry in spec.jobs:
        jobs.append(_entry_job(entry, runs, spec.preemptions))
        groups[entry.name] = [entry.name]
    for sweep in spec.sweeps:
        check_sweep(sweep)
        if sweep.search == "optuna":
            searches.append(Search(sweep, runs, spec.preemptions))
            continue
        points = grid_points(sweep.grid or {}, f"sweep '{sweep.name}'")
        swept = [
            sweep_job(sweep, runs, spec.preemptions, i, params=p) for i, p in enumerate(points)
        ]
        jobs += swept
        groups[sweep.name] = [j.name for j in swept]
    for search in searches:
        for ref in search.sweep.after:
            if ref not in groups:
                raise ConfigError(f"sweep '{search.sweep.name}': after: unknown job '{ref}'")
            search.upstream += groups[ref]
    searched = {s.sweep.name for s in searches}
    for job in jobs:
        if waits := searched & set(job.after):
            raise ConfigError(
                f"job '{job.name}': after: '{sorted(waits)[0]}' is a search, whose trials are"
                " not known in advance; run what uses its best trial from a second JOBS.yaml"
            )
    seen: set[str] = set()
    for name in [*(e.name for e in spec.jobs), *(s.name for s in spec.sweeps)]:
        if not NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: name '{name}' must be letters, digits, '.', '_' or '-' (max 64)"
            )
        if name in seen:
            raise ConfigError(f"{path}: the name '{name}' is used twice; names must be unique")
        seen.add(name)
    if not jobs and not searches:
        raise ConfigError(f"{path} holds no jobs: add a 'jobs:' or 'sweeps:' list")
    if spec.notify is not None:
        for job in jobs:
            job.notify = spec.notify.model_dump()
        for search in searches:
            search.notify = spec.notify.model_dump()
    return Plan(runs, _ordered(jobs, groups), searches)
