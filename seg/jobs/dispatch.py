"""Jobs onto a Dask cluster and back: each job a task running seg.jobs.worker.run_job after
the tasks of the jobs it waits for; what Dask knows of a task that failed, into job.json."""

from __future__ import annotations

import os
import uuid
from typing import Any

from seg.jobs import state as jobstate
from seg.jobs.jobs_file import Job
from seg.jobs.worker import JobFailed, run_job


def enqueue(
    client: Any, jobs: list[Job], gpu_cluster: bool, futures: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Submit each job not already done (same argv) as a Dask task after the tasks of its
    `after` jobs (in `futures`, which gains the new ones); job.json says queued."""
    futures = {} if futures is None else futures
    cwd = os.getcwd()
    for job in jobs:
        state = jobstate.read_state(job.run_dir)
        if state and state.get("state") in ("done", "pruned") and state.get("argv") == job.argv:
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


def settle(job: Job, future: Any) -> None:
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
