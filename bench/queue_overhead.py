"""What `seg queue` costs on top of the work: the same jobs run directly, one after the other,
and through `seg queue submit` on the embedded local cluster (one CPU worker), side by side.

Each job sleeps S seconds in its own Python process, so the difference is pure overhead: starting
the cluster, scheduling, GPU claim, state files and logs. Printed: both wall times, their ratio,
the one-off start-up cost and the overhead per job.

Usage: python bench/queue_overhead.py [--quick] [--jobs K] [--sleep S] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def direct(jobs: int, sleep: float) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        subprocess.run([sys.executable, "-c", f"import time; time.sleep({sleep})"], check=True)
    return time.perf_counter() - started


def queued(jobs: int, sleep: float, work: Path) -> tuple[float, float]:
    """(wall time of `seg queue submit`, summed wall time of the jobs as the workers saw it)."""
    spec = {
        "jobs": [
            {
                "name": f"j{i}",
                "program": [sys.executable, "-c", f"import time; time.sleep({sleep})"],
            }
            for i in range(jobs)
        ]
    }
    path = work / "jobs.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = work / "runs"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # one CPU worker, as on a GPU-less box
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "seg", "queue", "submit", str(path), "--runs", str(runs)],
        check=True,
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    in_jobs = 0.0
    for i in range(jobs):
        state = json.loads((runs / f"j{i}" / "job.json").read_text())
        in_jobs += state["finished"] - state["started"]
    return wall, in_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 jobs of 0.2 s (a smoke test)")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    jobs, sleep = (3, 0.2) if args.quick else (args.jobs, args.sleep)
    with tempfile.TemporaryDirectory(prefix="seg-bench-queue-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t_direct = direct(jobs, sleep)
        t_queue, t_in_jobs = queued(jobs, sleep, work)
    print(f"{jobs} jobs of {sleep:.1f} s each (Python subprocesses)")
    print(f"direct, one after the other : {t_direct:8.2f} s")
    print(f"seg queue submit (local)    : {t_queue:8.2f} s")
    print(f"ratio queue / direct        : {t_queue / t_direct:8.2f}")
    print(f"start-up + shutdown, once   : {t_queue - t_in_jobs:8.2f} s")
    print(f"overhead per job            : {(t_in_jobs - t_direct) / jobs * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
