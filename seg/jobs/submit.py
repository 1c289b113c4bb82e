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
import socket
from collections.abc import Iterator
from typing import Any

import psutil

from seg import fs as segfs
from seg.errors import ConfigError, ResourceError, SegError
from seg.jobs import state as jobstate
from seg.jobs.dispatch import enqueue, settle
from seg.jobs.jobs_file import Job, read_plan
from seg.jobs.search import SearchSummary, run_search
from seg.jobs.status import StatusReport, status_report
from seg.jobs.worker import gpu_ids
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
                settle(jobs[name], future)
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
    plan = read_plan(jobs_file, runs)
    runs, jobs = plan.runs, plan.jobs
    if detach and not scheduler:
        raise ConfigError("--detach needs --scheduler: a local cluster ends with this command")
    if detach and plan.searches:
        raise ConfigError(
            f"sweep '{plan.searches[0].sweep.name}' is a search, which this command drives (it"
            " asks for each trial); submit without --detach, e.g. inside tmux or a VM"
        )
    with _client(scheduler) as client:
        gpu_cluster = _check_cluster(client, runs, scheduler)
        futures = enqueue(client, jobs, gpu_cluster)
        if detach:
            from distributed import fire_and_forget

            fire_and_forget(list(futures.values()))
            reporter.note(
                f"queued {len(futures)} jobs on {scheduler};"
                f" watch them with: seg queue status --runs {runs}"
            )
            return StatusReport([], [], [])
        searched = [
            run_search(client, s, futures, gpu_cluster, reporter=reporter) for s in plan.searches
        ]
        _wait({k: f for k, f in futures.items() if k in {j.name for j in jobs}},
              {j.name: j for j in jobs}, reporter)  # fmt: skip
    trials = {s.name for s in searched}
    states = [s for j in jobs if (s := jobstate.read_state(j.run_dir))]
    states += [s for s in jobstate.list_states(runs) if s.get("sweep") in trials]
    report = status_report(runs, states, notes=[summary_line(s) for s in searched])
    bad = [s["name"] for s in states if s.get("state") not in ("done", "pruned")]
    if bad:
        raise JobsFailed(
            report,
            f"{len(bad)} of {len(states)} jobs did not finish: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; see {segfs.join(runs, bad[0], 'job.log')} and"
            " `seg queue status`; fix and submit again (finished jobs are skipped)",
        )
    return report


def summary_line(s: SearchSummary) -> str:
    best = f"best {s.best:.4f} ({s.best_trial})" if s.best is not None else "no trial finished"
    return (
        f"search {s.name}: {s.trials} trials, {s.complete} complete, {s.pruned} pruned,"
        f" {s.failed} failed; {best}; {s.seconds:.0f} s"
    )
