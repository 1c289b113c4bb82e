"""The worker side of `seg queue`: one job's attempts, run on a Dask worker.

Each attempt runs `seg ...` (or a program) in a subprocess pinned to one GPU of the machine
(CUDA_VISIBLE_DEVICES, claimed with a file lock), logging to RUNS/NAME/job.log. The subprocess
dies with its worker (PDEATHSIG: SIGTERM, so `seg train` saves a checkpoint and exits 75).
Retries: exit 75 (preempted) -> run again, up to `preemptions` times; any other failure ->
`retries` more attempts, then the job is failed. A worker that goes away is Dask's business:
the scheduler runs the task elsewhere, and this code then waits for the old process (if it is
on this machine) and continues the counts from job.json; train jobs carry `--resume auto`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import psutil

from seg import fs as segfs
from seg.errors import EXIT_DIVERGED, EXIT_PREEMPTED
from seg.jobs import state as jobstate
from seg.jobs.jobs_file import Job
from seg.notify import NotifySection, message, send

# Started in the child before seg: die with the worker (SIGTERM -> checkpoint, exit 75), and
# if the worker is already gone, do not start at all.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\nexcept (AttributeError, OSError):\n"
    "    pass\n"
    f"if os.getppid() != int(sys.argv[1]):\n    sys.exit({EXIT_PREEMPTED})\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class JobFailed(Exception):
    """A job failed for real (after its retries); dependent jobs do not run."""


def gpu_ids() -> list[str]:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, ln in enumerate(out.stdout.splitlines()) if ln.startswith("GPU ")]


@contextlib.contextmanager
def _claim_gpu(wanted: bool) -> Iterator[str]:
    """Yield the CUDA_VISIBLE_DEVICES value for one job: one free GPU of this machine, held
    with a file lock so two workers on one box never share it ("" = CPU only)."""
    ids = gpu_ids() if wanted else []
    if not ids:
        yield ""
        return
    folder = os.path.join(tempfile.gettempdir(), "seg-queue-gpus")
    os.makedirs(folder, exist_ok=True)
    while True:
        for gpu in ids:
            fh = open(os.path.join(folder, f"{gpu.replace('/', '_')}.lock"), "w")  # noqa: SIM115
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            try:
                yield gpu
            finally:
                fh.close()  # releases the lock
            return
        time.sleep(2.0)


def _wait_for_previous(state: dict[str, Any] | None) -> None:
    """An earlier attempt's process on this machine (its worker died) is still saving a
    checkpoint after its SIGTERM: let it finish before resuming, so no work is done twice."""
    if not state or state.get("state") != "running" or state.get("host") != socket.gethostname():
        return
    try:
        proc = psutil.Process(int(state["pid"]))
        if abs(proc.create_time() - float(state.get("pid_started", 0))) > 1.0:
            return  # the pid was reused by an unrelated process
        proc.wait(timeout=120)
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return
    except psutil.TimeoutExpired:
        proc.kill()


def _open_log(job: Job) -> tuple[IO[bytes], str | None]:
    """The job's log: RUNS/NAME/job.log appended directly when local; a local file uploaded
    after each attempt when RUNS is remote."""
    target = segfs.join(job.run_dir, "job.log")
    if not segfs.is_remote(target):
        os.makedirs(job.run_dir, exist_ok=True)
        return open(target, "ab"), None
    fd, tmp = tempfile.mkstemp(prefix="seg-job-", suffix=".log")
    os.close(fd)
    with contextlib.suppress(FileNotFoundError), open(tmp, "wb") as fh:
        fh.write(segfs.read_bytes(target))
    return open(tmp, "ab"), tmp


def _attempt(job: Job, gpu: str, log: IO[bytes], cwd: str | None) -> int:
    """Run the job's process once; returns its exit code."""
    argv = [sys.executable, "-m", "seg", *job.argv] if job.kind == "seg" else job.argv
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise JobFailed(f"job {job.name}: program {argv[0]!r} not found on {socket.gethostname()}")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "SEG_QUEUE_JOB": job.name}
    # The Dask nanny sets these to 1 for its worker; a job is a process of its own and gets the
    # machine's threads, as a direct `seg train` would (and the same weights).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)
    launcher = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
    proc = subprocess.Popen(
        launcher,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd if cwd and os.path.isdir(cwd) else None,
    )
    started = psutil.Process(proc.pid).create_time()
    jobstate.update_state(job.run_dir, pid=proc.pid, pid_started=started)
    try:
        return proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)  # the task was cancelled: let seg checkpoint
        raise


def run_job(job_dict: dict[str, Any], cwd: str | None, *upstream: Any) -> dict[str, Any]:
    """Runs on a Dask worker: the job's attempts until it succeeds or is out of retries."""
    job = Job(**job_dict)
    previous = jobstate.read_state(job.run_dir)
    _wait_for_previous(previous)
    counts = {k: int((previous or {}).get(k, 0)) for k in ("attempts", "failures", "preempted")}
    if (previous or {}).get("state") not in ("running", "retrying"):
        # a new submit: earlier failures do not count against this one's retries
        counts = {"attempts": counts["attempts"], "failures": 0, "preempted": 0}
    worker = _worker_address()
    with _claim_gpu(job.gpu) as gpu:
        while True:
            counts["attempts"] += 1
            jobstate.write_state(
                job.run_dir,
                {
                    **job.to_dict(),
                    **counts,
                    "state": "running",
                    "host": socket.gethostname(),
                    "worker": worker,
                    "worker_pid": os.getpid(),
                    "gpu_id": gpu,
                    "started": time.time(),
                    "message": "",
                },
            )
            log, tmp = _open_log(job)
            try:
                log.write(f"\n=== attempt {counts['attempts']} on {worker} gpu={gpu!r}\n".encode())
                log.flush()
                code = _attempt(job, gpu, log, cwd)
            finally:
                log.close()
                if tmp:
                    segfs.filesystem(job.run_dir)[0].put_file(
                        tmp, segfs.join(job.run_dir, "job.log")
                    )
                    os.remove(tmp)
            if code == 0:
                pruned = _pruned_reason(job)  # a search stopped it early (seg.jobs.search)
                end = "pruned" if pruned else "done"
                jobstate.update_state(job.run_dir, state=end, exit_code=0, finished=time.time(),
                                      message=pruned or "")  # fmt: skip
                _tell(job, "finished", counts)
                return {"name": job.name, "state": end, **counts}
            if code == EXIT_PREEMPTED:
                counts["preempted"] += 1
                out_of = counts["preempted"] > job.preemptions
            else:
                counts["failures"] += 1
                # resume is bit-identical, so a diverged run would diverge again: no retry
                diverged = code == EXIT_DIVERGED and _is_train(job)
                out_of = counts["failures"] > job.retries or diverged
            if out_of:
                why = "diverged (loss not finite) " if diverged else ""
                message = f"{why}exit {code} after {counts['attempts']} attempts; see job.log"
                jobstate.update_state(
                    job.run_dir,
                    **counts,
                    state="failed",
                    exit_code=code,
                    message=message,
                    finished=time.time(),
                )
                _tell(job, "failed", counts, error=message)
                raise JobFailed(f"job {job.name}: {message}")
            jobstate.update_state(job.run_dir, **counts, state="retrying", exit_code=code)


def _is_train(job: Job) -> bool:
    return job.kind == "seg" and bool(job.argv) and job.argv[0] == "train"


def _pruned_reason(job: Job) -> str | None:
    """The reason a train job ended early at a search's request (its summary.json), or None."""
    if not _is_train(job):
        return None
    try:
        reason = json.loads(segfs.read_bytes(segfs.join(job.run_dir, "summary.json")))["reason"]
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None
    return str(reason) if str(reason).startswith("pruned") else None


def _tell(job: Job, event: str, counts: dict[str, int], **facts: Any) -> None:
    """The JOBS.yaml `notify:` for a job that ended; a failing notifier is only logged."""
    if job.notify is None:
        return
    body = message(event, job.run_dir, job=job.name, **counts, **facts)
    for warning in send(NotifySection.model_validate(job.notify), body):
        logging.getLogger("seg.jobs").warning(warning)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return socket.gethostname()
