"""`seg queue submit`: send the jobs of a JOBS.yaml to a Dask distributed cluster.

    dask scheduler                                          # one box, port 8786
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1   # per GPU
    seg queue submit JOBS.yaml --scheduler tcp://HOST:8786 --runs gs://bucket/runs/night1

Without --scheduler the jobs run on a LocalCluster on this machine: one worker per GPU, or one
CPU worker. GPU jobs ask for resources={"GPU": 1} when the cluster's workers offer GPUs, so a
worker started with `--resources GPU=1` runs one at a time. Jobs whose state says done (same
command) are skipped, so the same submit can be repeated after a crash. The worker side is
seg.jobs.worker; job state, status and leaderboards are seg.jobs.state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psutil

from seg import fs as segfs
from seg.errors import ConfigError, ResourceError, SegError
from seg.jobs import state as jobstate
from seg.jobs.jobs_file import Job, load_jobs
from seg.jobs.status import StatusReport, status_report
from seg.jobs.worker import JobFailed, gpu_ids, run_job
from seg.report import SILENT, Reporter

# A task whose worker died this many times is given up (Dask's count; crashes, not preemption).
ALLOWED_WORKER_DEATHS = 5


@contextlib.contextmanager
def _client(scheduler: str | None) -> Iterator[Any]:
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ResourceError(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); start it"
                " with `dask scheduler` and check the address and firewall (port 8786)"
            ) from exc
        with client:
            yield client
        return
    gpus = len(gpu_ids())
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_WORKER_DEATHS}):
        cluster = LocalCluster(
            n_workers=max(gpus, 1),
            threads_per_worker=1,
            processes=True,
            resources={"GPU": 1} if gpus else None,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # failures are reported in the job table
        )
    with cluster, Client(cluster) as client:
        yield client


def _is_this_machine(host: str) -> bool:
    if host in {"127.0.0.1", "localhost", "::1", socket.gethostname()}:
        return True
    return host in {a.address for nics in psutil.net_if_addrs().values() for a in nics}


def _check_cluster(client: Any, runs: str, scheduler: str | None) -> bool:
    """Wait for a worker; refuse a local runs folder that other machines cannot see. Returns
    whether the workers offer GPUs."""
    try:
        client.wait_for_workers(1, timeout=120)
    except TimeoutError as exc:
        raise ResourceError(
            f"no Dask worker joined {scheduler} within 2 minutes; start one per GPU with"
            f" `dask worker {scheduler} --nthreads 1 --resources GPU=1`"
        ) from exc
    workers = client.scheduler_info()["workers"].values()
    remote = [w["host"] for w in workers if not _is_this_machine(w["host"])]
    if remote and not segfs.is_remote(runs):
        raise ConfigError(
            f"workers on other machines ({', '.join(sorted(set(remote)))}) cannot see the local"
            f" runs folder {runs}; use --runs gs://BUCKET/runs/NAME"
        )
    return any(w.get("resources", {}).get("GPU") for w in workers)


def _enqueue(client: Any, jobs: list[Job], gpu_cluster: bool) -> dict[str, Any]:
    futures: dict[str, Any] = {}
    cwd = os.getcwd()
    for job in jobs:
        state = jobstate.read_state(job.run_dir)
        if state and state.get("state") == "done" and state.get("argv") == job.argv:
            continue  # finished by an earlier submit: dependents may run straight away
        jobstate.write_state(
            job.run_dir,
            {
                **(state or {}),
                **job.to_dict(),
                "state": "queued",
                "attempts": (state or {}).get("attempts", 0),
                "message": "",
                "exit_code": None,
            },
        )
        deps = [futures[name] for name in job.after if name in futures]
        futures[job.name] = client.submit(
            run_job,
            job.to_dict(),
            cwd,
            *deps,
            key=f"seg-queue-{job.name}-{uuid.uuid4().hex[:8]}",
            resources={"GPU": 1} if job.gpu and gpu_cluster else None,
            pure=False,
        )
    return futures


def _settle(job: Job, future: Any) -> None:
    """Record what Dask knows about a job that did not succeed in the job's state file."""
    from distributed import KilledWorker

    exc = future.exception()
    state = jobstate.read_state(job.run_dir) or {}
    if isinstance(exc, JobFailed) and state.get("state") == "failed":
        return
    if state.get("state") == "queued":  # never started: an upstream job failed
        jobstate.update_state(
            job.run_dir, state="skipped", message=f"not run: upstream failed ({exc})"
        )
    elif isinstance(exc, KilledWorker):
        message = "its worker died too often (allowed-failures); see job.log"
        jobstate.update_state(job.run_dir, state="failed", message=message)
    else:
        message = f"{type(exc).__name__}: {exc}"
        jobstate.update_state(job.run_dir, state="failed", message=message[:300])


class JobsFailed(SegError):
    """Some jobs did not finish; `report` still holds the table to show."""

    def __init__(self, report: StatusReport, message: str) -> None:
        super().__init__(message)
        self.report = report


def _wait(futures: dict[str, Any], jobs: dict[str, Job], reporter: Reporter) -> None:
    from distributed import as_completed

    names = {f.key: name for name, f in futures.items()}
    with reporter.bar("jobs", len(futures)) as bar:
        for future in as_completed(list(futures.values())):
            name = names[future.key]
            if future.status != "finished":
                _settle(jobs[name], future)
            state = (jobstate.read_state(jobs[name].run_dir) or {}).get("state", "?")
            bar.advance(1, note=f"{name}: {state}")


def submit_jobs(
    jobs_file: str,
    scheduler: str | None,
    runs: str | None,
    *,
    detach: bool = False,
    reporter: Reporter = SILENT,
) -> StatusReport:
    """`seg queue submit`: run every job (waiting, unless detach) and return the job table and
    the sweeps' leaderboards. Raises SegError naming the jobs that failed."""
    runs, jobs = load_jobs(jobs_file, runs)
    if detach and not scheduler:
        raise ConfigError("--detach needs --scheduler: a local cluster ends with this command")
    with _client(scheduler) as client:
        gpu_cluster = _check_cluster(client, runs, scheduler)
        futures = _enqueue(client, jobs, gpu_cluster)
        if detach:
            from distributed import fire_and_forget

            fire_and_forget(list(futures.values()))
            reporter.note(
                f"queued {len(futures)} jobs on {scheduler};"
                f" watch them with: seg queue status --runs {runs}"
            )
            return StatusReport([], [], [])
        _wait(futures, {j.name: j for j in jobs}, reporter)
    states = [s for j in jobs if (s := jobstate.read_state(j.run_dir))]
    report = status_report(runs, states)
    bad = [s["name"] for s in states if s.get("state") != "done"]
    if bad:
        raise JobsFailed(
            report,
            f"{len(bad)} of {len(jobs)} jobs did not finish: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; see {segfs.join(runs, bad[0], 'job.log')} and"
            " `seg queue status`; fix and submit again (finished jobs are skipped)",
        )
    return report
