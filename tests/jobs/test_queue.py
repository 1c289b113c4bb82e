"""`seg queue` on CPU: a sweep of real tiny `seg train` runs on the embedded LocalCluster, retry
rules (exit 75 retried, real failures bounded, dependents skipped), resubmission skipping
finished jobs, and a worker SIGKILLed mid-training on a scheduler + two workers started here:
the job moves to the other worker and resumes from its checkpoint with no epoch lost or redone.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "unet_mobilenetv2.yaml")
# A run of a few seconds per epoch on a busy CPU.
TINY = [
    "data.batch_size=2",
    "data.num_workers=0",
    "data.max_val_windows=2",
    "train.preview_windows=0",
    "train.precision=fp32",
    "train.channels_last=false",
    "schedule.warmup_steps=0",
    "checkpoint.every_epochs=null",
]


def seg(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seg", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def state(runs: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((runs / name / "job.json").read_text())
    return data


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_sweep_and_retry_rules_on_the_local_cluster(
    tmp_path: Path, make_store: Callable[..., Path]
) -> None:
    store = make_store()
    # exits 75 ("preempted") the first time, 0 the second
    flaky = "import os, sys; e = os.path.exists('m'); open('m', 'w'); sys.exit(0 if e else 75)"
    jobs = write_yaml(
        tmp_path / "jobs.yaml",
        {
            "jobs": [
                {"name": "flaky", "program": [sys.executable, "-c", flaky]},
                {"name": "broken", "program": [sys.executable, "-c", "raise SystemExit(3)"]},
                {
                    "name": "after-broken",
                    "program": [sys.executable, "-c", "0"],
                    "after": ["broken"],
                },
            ],
            "sweeps": [
                {
                    "name": "lr",
                    "config": CONFIG,
                    "data": str(store),
                    "set": [*TINY, "train.epochs=2", "train.steps_per_epoch=1"],
                    "grid": {"optim.lr": [0.001, 0.02]},
                }
            ],
        },
    )
    runs = tmp_path / "runs"
    result = seg("queue", "submit", str(jobs), "--runs", str(runs), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("seg: error: 2 of 5 jobs did not finish: broken, after-broken")
    assert "Traceback" not in result.stderr

    # exit 75 (preempted) is retried; a real failure gets 1 + retries (1) attempts, then stops
    flaky_state = state(runs, "flaky")
    assert (flaky_state["state"], flaky_state["attempts"], flaky_state["preempted"]) == (
        "done",
        2,
        1,
    )
    broken = state(runs, "broken")
    assert (broken["state"], broken["attempts"], broken["exit_code"]) == ("failed", 2, 3)
    skipped = state(runs, "after-broken")
    assert skipped["state"] == "skipped" and skipped["attempts"] == 0
    assert "broken" in skipped["message"]

    # the sweep: one real `seg train` per grid point, the value reaching its resolved config
    best = {}
    for name, lr in (("lr/000", 0.001), ("lr/001", 0.02)):
        s = state(runs, name)
        assert s["state"] == "done" and s["params"] == {"optim.lr": lr}
        resolved = yaml.safe_load((runs / name / "config.yaml").read_text())
        assert resolved["optim"]["lr"] == lr and resolved["train"]["epochs"] == 2
        assert [r["epoch"] for r in metrics(runs / name)] == [0, 1]
        best[name] = max(r["miou"] for r in metrics(runs / name))
    with open(runs / "lr" / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == sorted(best, key=lambda n: -best[n])
    assert [r["rank"] for r in rows] == ["1", "2"]
    for row in rows:
        assert float(row["best_miou"]) == pytest.approx(best[row["run"]], abs=1e-6)
        assert float(row["optim.lr"]) == state(runs, row["run"])["params"]["optim.lr"]
    assert "leaderboard: sweep lr" in result.stdout

    status = seg("queue", "status", "--runs", str(runs), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in status.stdout.splitlines() if "│" in ln}
    assert "done" in lines["lr/000"] and "epoch 2/2" in lines["lr/000"]
    assert f"miou {best['lr/001']:.4f}" in lines["lr/001"]
    assert "failed" in lines["broken"] and "skipped" in lines["after-broken"]

    # submitting again skips finished jobs: the sweep's runs are not touched
    before = {n: (runs / n / "metrics.jsonl").read_bytes() for n in ("lr/000", "lr/001")}
    again = seg("queue", "submit", str(jobs), "--runs", str(runs), cwd=tmp_path)
    assert again.returncode == 1
    for name, data in before.items():
        assert (runs / name / "metrics.jsonl").read_bytes() == data
        assert state(runs, name)["attempts"] == 1
    assert state(runs, "broken")["attempts"] == 4  # counted across submits, retried again


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"jobs": [{"name": "a", "command": "tile x", "colour": 1}]},
            "unknown key 'jobs.0.colour'",
        ),
        (
            {"jobs": [{"name": "a", "command": "tile x", "after": ["b"]}]},
            "unknown job or sweep 'b'",
        ),
        (
            {"jobs": [{"name": "a", "command": "tile x"}, {"name": "a", "command": "tile y"}]},
            "the name 'a' is used twice",
        ),
        (
            {
                "jobs": [
                    {"name": "a", "command": "tile x", "after": ["b"]},
                    {"name": "b", "command": "tile y", "after": ["a"]},
                ]
            },
            "in a circle",
        ),
        ({"sweeps": [{"name": "s", "config": "c", "data": "d", "grid": {"x": []}}]}, "non-empty"),
        ({"jobs": [{"name": "a", "command": "x", "program": ["y"]}]}, "exactly one of"),
        ({"jobs": [{"name": "a b", "command": "tile x"}]}, "must be letters"),
        ({}, "holds no jobs"),
    ],
)
def test_bad_jobs_file_is_one_clear_line(
    tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]], spec: dict[str, Any], message: str
) -> None:
    path = write_yaml(tmp_path / "jobs.yaml", spec)
    code, _out, err = seg_run("queue", "submit", str(path), "--runs", str(tmp_path / "runs"))
    assert code == 1
    assert err.startswith("seg: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_train_jobs_get_their_run_dir_and_resume(tmp_path: Path) -> None:
    from seg.jobs.jobs_file import load_jobs

    path = write_yaml(
        tmp_path / "jobs.yaml",
        {
            "runs": "gs://b/night",
            "jobs": [
                {"name": "t", "command": "seg train --config c.yaml --data {runs}/ds.zarr"},
                {
                    "name": "p",
                    "command": ["predict", "s.tif", "--out", "{run_dir}/m"],
                    "after": ["s"],
                },
                {"name": "tile", "command": "tile s.tif --out {runs}/ds.zarr"},
            ],
            "sweeps": [
                {"name": "s", "config": "c.yaml", "data": "d", "grid": {"a.b": [1, 2], "c": ["x"]}},
            ],
        },
    )
    runs, jobs = load_jobs(str(path), None)
    by = {j.name: j for j in jobs}
    assert runs == "gs://b/night"
    assert by["t"].argv == [
        "train",
        "--config",
        "c.yaml",
        "--data",
        "gs://b/night/ds.zarr",
        "--out",
        "gs://b/night/t",
        "--resume",
        "auto",
    ]
    assert by["t"].gpu and by["p"].gpu and not by["tile"].gpu
    assert by["p"].argv == ["predict", "s.tif", "--out", "gs://b/night/p/m"]
    assert by["p"].after == ["s/000", "s/001"]
    assert [j.name for j in jobs].index("p") > [j.name for j in jobs].index("s/001")
    assert by["s/001"].params == {"a.b": 2, "c": "x"}
    assert by["s/001"].argv[-6:] == [
        "--set",
        "c=x",
        "--out",
        "gs://b/night/s/001",
        "--resume",
        "auto",
    ]


# --- a scheduler and two workers on 127.0.0.1; one is killed in the middle of a job ----------


def _scheduler_address(sched_file: Path, scheduler: subprocess.Popen[bytes]) -> str:
    """The scheduler's address, once its file is whole.

    dask writes the file in place, so it can exist and still be empty or half-written
    for a moment (CI once read it empty); poll until it parses.
    """
    deadline = time.time() + 60
    while time.time() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}")
        try:
            return str(json.loads(sched_file.read_text())["address"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.2)
    raise TimeoutError(f"no scheduler address in {sched_file} after 60 s")


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    bin_dir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([str(bin_dir / "dask"), *args], stdout=log, stderr=log)
        procs.append(proc)
        return proc

    start(
        "scheduler",
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-dashboard",
        "--scheduler-file",
        str(sched_file),
    )
    try:
        address = _scheduler_address(sched_file, procs[0])
        workers = [
            start(
                f"worker{i}",
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
            )
            for i in range(2)
        ]
        yield address, workers
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_killed_worker_job_resumes_on_the_other_worker(
    tmp_path: Path,
    make_store: Callable[..., Path],
    dask_cluster: tuple[str, list[subprocess.Popen[bytes]]],
) -> None:
    address, workers = dask_cluster
    store = make_store()
    epochs, steps = 3, 2
    jobs = write_yaml(
        tmp_path / "jobs.yaml",
        {
            "jobs": [
                {
                    "name": "exp",
                    "command": [
                        "train",
                        "--config",
                        CONFIG,
                        "--data",
                        str(store),
                        *[w for s in TINY for w in ("--set", s)],
                        "--set",
                        f"train.epochs={epochs}",
                        "--set",
                        f"train.steps_per_epoch={steps}",
                    ],
                }
            ]
        },
    )
    runs = tmp_path / "runs"
    submit = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seg",
            "queue",
            "submit",
            str(jobs),
            "--scheduler",
            address,
            "--runs",
            str(runs),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait for the first epoch to be recorded, then SIGKILL the worker running the job
    deadline = time.time() + 240
    while time.time() < deadline and not metrics(runs / "exp"):
        assert submit.poll() is None, submit.communicate()
        time.sleep(0.2)
    first = metrics(runs / "exp")
    assert first and len(first) < epochs, "the job must still be running when its worker dies"
    victim = state(runs, "exp")
    by_pid = {w.pid: w for w in workers}
    assert victim["worker_pid"] in by_pid
    os.kill(victim["worker_pid"], signal.SIGKILL)

    _, err = submit.communicate(timeout=300)
    assert submit.returncode == 0, err
    final = state(runs, "exp")
    assert final["state"] == "done" and final["attempts"] == 2
    assert final["worker_pid"] != victim["worker_pid"]
    assert by_pid[final["worker_pid"]].poll() is None  # the survivor did it
    records = metrics(runs / "exp")
    # no epoch lost or repeated, the epochs before the kill kept as they were, all steps done
    assert [r["epoch"] for r in records] == list(range(epochs))
    assert [r["step"] for r in records] == [steps * (e + 1) for e in range(epochs)]
    assert records[: len(first)] == first
    log = (runs / "exp" / "job.log").read_text()
    assert "=== attempt 2" in log
    assert "--resume" in " ".join(final["argv"])

    # --detach: queued on the scheduler, the command returns at once, the job still runs
    later = write_yaml(
        tmp_path / "later.yaml",
        {"jobs": [{"name": "later", "program": [sys.executable, "-c", "print('later')"]}]},
    )
    queued = seg(
        "queue",
        "submit",
        str(later),
        "--scheduler",
        address,
        "--runs",
        str(runs),
        "--detach",
        cwd=tmp_path,
    )
    assert queued.returncode == 0, queued.stderr
    assert "seg queue status" in queued.stderr
    deadline = time.time() + 60
    while state(runs, "later")["state"] != "done" and time.time() < deadline:
        time.sleep(0.5)
    assert state(runs, "later")["state"] == "done"


@pytest.mark.slow
def test_runs_folder_on_gcs_and_gpu_pinning(tmp_path: Path, gcs_bucket: str) -> None:
    """Job state and logs in a gs:// runs folder (fake GCS on 127.0.0.1), read back by status;
    with two (pretend) GPUs the local cluster has a worker per GPU and GPU jobs are pinned."""
    runs = f"{gcs_bucket}/queue-{tmp_path.name}"
    flaky = (
        "import os, sys; e = os.path.exists('m'); open('m', 'w'); print('hi');"
        " sys.exit(0 if e else 75)"
    )
    show_gpu = "import os; print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'] + '.')"
    jobs = write_yaml(
        tmp_path / "jobs.yaml",
        {
            "jobs": [
                {"name": "first", "program": [sys.executable, "-c", flaky], "gpu": True},
                {"name": "cpu", "program": [sys.executable, "-c", show_gpu], "after": ["first"]},
                {"name": "gpu", "program": [sys.executable, "-c", show_gpu], "gpu": True},
            ]
        },
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5"}
    result = seg("queue", "submit", str(jobs), "--runs", runs, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    from seg import fs as segfs
    from seg.jobs.state import read_state

    first = read_state(f"{runs}/first")
    assert first is not None and (first["state"], first["attempts"]) == ("done", 2)
    assert first["gpu_id"] in {"3", "5"}
    log = segfs.read_bytes(f"{runs}/first/job.log").decode()
    assert log.count("=== attempt") == 2 and log.count("hi") == 2
    assert "CVD=." in segfs.read_bytes(f"{runs}/cpu/job.log").decode()  # a CPU job sees no GPU
    gpu_log = segfs.read_bytes(f"{runs}/gpu/job.log").decode()
    assert "CVD=3." in gpu_log or "CVD=5." in gpu_log
    status = seg("queue", "status", "--runs", runs, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {ln.split("│")[1].strip(): ln for ln in status.stdout.splitlines() if "│" in ln}
    assert set(rows) == {"first", "cpu", "gpu"} and all("done" in r for r in rows.values())


def test_gpu_claims_are_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    from seg.jobs.worker import _claim_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    with _claim_gpu(True) as a, _claim_gpu(True) as b:
        assert {a, b} == {"3", "5"}
        with _claim_gpu(False) as none:
            assert none == ""
    with _claim_gpu(True) as again:  # released when the job ended
        assert again == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with _claim_gpu(True) as cpu:
        assert cpu == ""


def test_status_skips_an_ill_typed_job_json(tmp_path: Path, seg_run: Any) -> None:
    runs = tmp_path / "runs"
    for name, text in (("a", "[1, 2]"), ("b", '{"name": 7}'), ("c", "\xff\xfe")):
        (runs / name).mkdir(parents=True)
        (runs / name / "job.json").write_text(text, encoding="latin-1")
    code, out, err = seg_run("queue", "status", "--runs", runs)
    assert code == 0 and "no queue jobs" in out, err
