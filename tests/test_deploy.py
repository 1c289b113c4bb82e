"""deploy/gcp without a cloud: shellcheck, dry runs whose gcloud commands are checked flag by
flag, and the Cloud Batch job JSON parsed strictly by the real Batch API types."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.cloud import batch_v1

ROOT = Path(__file__).resolve().parents[1]
GCP = ROOT / "deploy" / "gcp"
SCRIPTS = sorted([*GCP.glob("*.sh"), *GCP.glob("vm/*.sh")])
REGISTRY = "europe-west4-docker.pkg.dev"
IMAGE = f"{REGISTRY}/proj-1/seg/seg:abc123"
NAMES = {
    "PROJECT": "proj-1",
    "REGION": "europe-west4",
    "BUCKET": "proj-1-data",
    "REPOSITORY": "seg",
    "TAG": "abc123",
    "SERVICE_ACCOUNT": "seg-runner@proj-1.iam.gserviceaccount.com",
}


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """Run a deploy script with DRY_RUN=1; each printed line parsed back into an argv."""
    clean = {k: v for k, v in os.environ.items() if k not in {"IMAGE", "TAG", "ZONE"}}
    result = subprocess.run(
        ["bash", str(GCP / script), *args],
        env={**clean, **NAMES, "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def test_scripts_exist_and_are_executable() -> None:
    names = {p.relative_to(GCP).as_posix() for p in SCRIPTS}
    expected = {"setup.sh", "build_push.sh", "create_vm.sh", "restart_vms.sh", "submit_batch.sh"}
    assert expected | {"vm/startup.sh", "vm/shutdown.sh"} <= names
    for script in SCRIPTS:
        if script.name != "env.sh" and script.name != "common.sh":
            assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(GCP).as_posix())
def test_shellcheck(script: Path) -> None:
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.fail("shellcheck not found: apt-get install -y shellcheck")
    result = subprocess.run(
        [binary, "--external-sources", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_names_come_from_one_env_file() -> None:
    [[*cmd, _ignore, _subs], describe] = dry_run("build_push.sh")
    assert cmd[:3] == ["gcloud", "builds", "submit"]
    # the default image name is built from the names in env.sh
    assert describe[:5] == ["gcloud", "artifacts", "docker", "images", "describe"]
    assert describe[5] == IMAGE
    env_text = (GCP / "env.sh").read_text()
    for name in ("PROJECT", "REGION", "BUCKET", "REPOSITORY", "IMAGE"):
        assert f'{name}="${{{name}:-' in env_text
    others = [p for p in SCRIPTS if p.name not in {"env.sh", "common.sh"}]
    for script in others:
        text = script.read_text()
        assert "PROJECT=" not in text and "REGION=" not in text, f"{script}: names belong in env.sh"


def test_build_push_cloud_build_uses_buildkit_recipe() -> None:
    cmds = dry_run("build_push.sh", TORCH_FLAVOR="cu126")
    submit = cmds[0]
    assert submit[:4] == ["gcloud", "builds", "submit", "."]
    f = flags(submit)
    assert f["project"] == "proj-1" and f["region"] == "europe-west4"
    assert f["config"] == "deploy/gcp/cloudbuild.yaml"
    assert (ROOT / f["ignore-file"]).exists()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"  # fmt: skip
    assert f["substitutions"] == f"_IMAGE={IMAGE},_TORCH_FLAVOR=cu126,_GIT_COMMIT={commit}"
    recipe = yaml.safe_load((ROOT / f["config"]).read_text())
    step = recipe["steps"][0]
    assert "DOCKER_BUILDKIT=1" in step["env"]
    assert "--build-arg=TORCH_FLAVOR=${_TORCH_FLAVOR}" in step["args"]
    assert "--build-arg=SEG_GIT_COMMIT=${_GIT_COMMIT}" in step["args"]
    assert "--tag=${_IMAGE}" in step["args"]
    assert recipe["images"] == ["${_IMAGE}"]


def test_build_push_with_local_docker() -> None:
    cmds = dry_run("build_push.sh", BUILDER="docker", TAG="v1")
    image = "europe-west4-docker.pkg.dev/proj-1/seg/seg:v1"
    assert cmds[0] == [
        "gcloud",
        "auth",
        "configure-docker",
        "europe-west4-docker.pkg.dev",
        "--quiet",
    ]
    build = cmds[1]
    assert build[:4] == ["env", "DOCKER_BUILDKIT=1", "docker", "build"]
    assert build[build.index("--build-arg") + 1] == "TORCH_FLAVOR=cu130"
    assert [a for a in build if a.startswith("SEG_GIT_COMMIT=")]
    assert build[build.index("--tag") + 1] == image
    assert cmds[2] == ["docker", "push", image]


def test_build_push_rejects_unknown_builder() -> None:
    result = subprocess.run(
        ["bash", str(GCP / "build_push.sh")],
        env={**os.environ, "DRY_RUN": "1", "BUILDER": "podman"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "BUILDER must be cloudbuild or docker" in result.stderr


def test_setup_creates_repository_bucket_and_least_privilege_service_account() -> None:
    cmds = dry_run("setup.sh")
    joined = [" ".join(c[:4]) for c in cmds]
    assert "gcloud artifacts repositories create" in joined
    repo = cmds[joined.index("gcloud artifacts repositories create")]
    assert repo[4] == "seg" and flags(repo)["repository-format"] == "docker"
    bucket = next(c for c in cmds if c[:4] == ["gcloud", "storage", "buckets", "create"])
    assert bucket[4] == "gs://proj-1-data" and flags(bucket)["location"] == "europe-west4"
    sa = next(c for c in cmds if c[:4] == ["gcloud", "iam", "service-accounts", "create"])
    assert sa[4] == "seg-runner"
    roles = {flags(c)["role"] for c in cmds if "add-iam-policy-binding" in c}
    assert roles == {
        "roles/storage.objectUser",
        "roles/artifactregistry.reader",
        "roles/logging.logWriter",
        "roles/batch.agentReporter",
    }
    for c in cmds:
        if "add-iam-policy-binding" in c:
            assert flags(c)["member"] == "serviceAccount:" + NAMES["SERVICE_ACCOUNT"]


def test_create_vm_is_a_spot_gpu_deep_learning_vm_running_the_container() -> None:
    seg_args = "train --config gs://b/c.yaml --data gs://b/ds.zarr --out gs://b/runs/e1 --set a=1,2"
    [cmd] = dry_run("create_vm.sh", SEG_ARGS=seg_args, VM_NAME="seg-test-vm")
    assert cmd[:5] == ["gcloud", "compute", "instances", "create", "seg-test-vm"]
    f = flags(cmd)
    assert f["project"] == "proj-1" and f["zone"] == "europe-west4-a"
    assert f["image-project"] == "deeplearning-platform-release"
    assert f["image-family"].endswith("-nvidia-580"), "CUDA 13 wheels need driver >= 580"
    assert f["provisioning-model"] == "SPOT"
    assert f["instance-termination-action"] == "STOP"
    assert f["maintenance-policy"] == "TERMINATE"
    assert f["scopes"] == "cloud-platform" and f["service-account"] == NAMES["SERVICE_ACCOUNT"]
    assert f["machine-type"] == "g2-standard-8"
    metadata = f["metadata"]
    assert metadata.startswith("^~^")
    items = dict(kv.split("=", 1) for kv in metadata[3:].split("~"))
    assert items["seg-image"] == IMAGE
    assert items["seg-args"] == seg_args
    scripts = dict(kv.split("=", 1) for kv in f["metadata-from-file"].split(","))
    assert Path(scripts["startup-script"]) == GCP / "vm" / "startup.sh"
    assert Path(scripts["shutdown-script"]) == GCP / "vm" / "shutdown.sh"


def test_create_vm_options_and_missing_args() -> None:
    [cmd] = dry_run(
        "create_vm.sh",
        SEG_ARGS="predict gs://b/s.tif --checkpoint gs://b/best.pt --out gs://b/p/",
        SPOT="0",
        MACHINE_TYPE="n1-standard-8",
        ACCELERATOR="type=nvidia-tesla-t4,count=1",
        PREEMPTION_NOTICE="120s",
    )
    f = flags(cmd)
    assert "provisioning-model" not in f
    assert f["accelerator"] == "type=nvidia-tesla-t4,count=1"
    assert f["preemption-notice-duration"] == "120s"
    result = subprocess.run(
        ["bash", str(GCP / "create_vm.sh")],
        env={**os.environ, "DRY_RUN": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "SEG_ARGS" in result.stderr


def test_vm_startup_pulls_and_runs_the_container_and_resumes_training() -> None:
    cmds = dry_run(
        "vm/startup.sh",
        SEG_IMAGE=IMAGE,
        SEG_ARGS="train --config gs://b/c.yaml --data gs://b/ds.zarr --out gs://b/runs/e1",
    )
    assert cmds[0] == [
        "gcloud",
        "auth",
        "configure-docker",
        "europe-west4-docker.pkg.dev",
        "--quiet",
    ]
    assert cmds[1] == ["docker", "pull", IMAGE]
    docker_run = next(c for c in cmds if c[:2] == ["docker", "run"])
    assert "--gpus" in docker_run and docker_run[docker_run.index("--gpus") + 1] == "all"
    assert docker_run[docker_run.index("--name") + 1] == "seg-job"
    tail = docker_run[docker_run.index(IMAGE) :]
    assert tail == [
        IMAGE,
        "train",
        "--config",
        "gs://b/c.yaml",
        "--data",
        "gs://b/ds.zarr",
        "--out",
        "gs://b/runs/e1",
        "--resume",
        "auto",
    ]
    # an explicit --resume is kept as given; other commands get none
    cmds = dry_run("vm/startup.sh", SEG_IMAGE=IMAGE, SEG_ARGS="predict gs://b/s.tif --out gs://o/")
    docker_run = next(c for c in cmds if c[:2] == ["docker", "run"])
    assert "--resume" not in docker_run


def test_vm_shutdown_sends_sigterm_through_docker_stop() -> None:
    [cmd] = dry_run("vm/shutdown.sh")
    # docker stop: SIGTERM to tini -> seg (checkpoint, exit 75), SIGKILL only after the grace time
    assert cmd[:2] == ["docker", "stop"] and cmd[-1] == "seg-job"
    grace = int(cmd[cmd.index("--time") + 1])
    assert 10 <= grace <= 30, "Spot gives at most ~30 s"


def test_restart_vms_lists_stopped_seg_vms() -> None:
    cmds = dry_run("restart_vms.sh")
    assert cmds[0][:4] == ["gcloud", "compute", "instances", "list"]
    assert flags(cmds[0])["filter"] == "labels.app=seg AND status=TERMINATED"
    assert cmds[1][:4] == ["gcloud", "compute", "instances", "start"]


BATCH_ENV = {
    "train": {
        "CONFIG": "gs://b/configs/e1.yaml",
        "DATA": "gs://b/ds.zarr",
        "RUN_DIR": "gs://b/runs/e1",
    },
    "tile": {
        "SCENES": "gs://b/scenes/*.tif",
        "LABELS": "gs://b/labels/",
        "STORE": "gs://b/ds.zarr",
    },
    "predict": {
        "SCENES": "gs://b/new/*.tif",
        "CHECKPOINT": "gs://b/runs/e1/best.pt",
        "OUT": "gs://b/pred/",
    },
}


def submit(kind: str, tmp_path: Path, **env: str) -> tuple[list[str], batch_v1.Job, dict]:
    job_json = tmp_path / f"{kind}.json"
    [cmd] = dry_run(
        "submit_batch.sh",
        kind,
        JOB_NAME=f"seg-{kind}-t",
        JOB_JSON=str(job_json),
        **{**BATCH_ENV[kind], **env},
    )
    text = job_json.read_text()
    # strict: unknown or misspelled fields and wrong types raise
    return cmd, batch_v1.Job.from_json(text), json.loads(text)


@pytest.mark.parametrize("kind", ["train", "tile", "predict"])
def test_batch_job_is_valid_spot_with_preemption_retries(kind: str, tmp_path: Path) -> None:
    cmd, job, _ = submit(kind, tmp_path, TASKS="6")
    assert cmd[:5] == ["gcloud", "batch", "jobs", "submit", f"seg-{kind}-t"]
    f = flags(cmd)
    assert f["location"] == "europe-west4" and f["project"] == "proj-1"
    assert Path(f["config"]) == tmp_path / f"{kind}.json"
    [group] = job.task_groups
    spec = group.task_spec
    [runnable] = spec.runnables
    assert runnable.container.image_uri == IMAGE
    policy = job.allocation_policy.instances[0].policy
    assert policy.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    [lifecycle] = spec.lifecycle_policies
    assert lifecycle.action == batch_v1.LifecyclePolicy.Action.RETRY_TASK
    assert set(lifecycle.action_condition.exit_codes) == {50001, 75}
    assert 1 <= spec.max_retry_count <= 10, "bounded: a real failure is not retried forever"
    assert list(job.allocation_policy.location.allowed_locations) == ["regions/europe-west4"]
    assert job.allocation_policy.service_account.email == NAMES["SERVICE_ACCOUNT"]
    if kind == "tile":
        assert not policy.accelerators, "tiling needs no GPU"
    else:
        assert job.allocation_policy.instances[0].install_gpu_drivers
        assert policy.accelerators[0].type_ == "nvidia-l4"
    if kind == "train":
        assert group.task_count == 1
        assert list(runnable.container.commands) == [
            "train",
            "--config",
            "gs://b/configs/e1.yaml",
            "--data",
            "gs://b/ds.zarr",
            "--out",
            "gs://b/runs/e1",
            "--resume",
            "auto",
        ]
        assert runnable.container.entrypoint == ""  # the image's: tini -- seg
    else:
        assert group.task_count == 6 and group.parallelism == 6


@pytest.mark.parametrize("kind", ["tile", "predict"])
def test_array_task_index_feeds_shard_flags(kind: str, tmp_path: Path) -> None:
    """Run the job's container command in a real shell with a fake `seg` printing its argv."""
    _, job, _ = submit(kind, tmp_path, TASKS="4")
    container = job.task_groups[0].task_spec.runnables[0].container
    assert container.entrypoint == "tini"  # signals still go through tini
    argv = list(container.commands)
    assert argv[0] == "--"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "seg"
    fake.write_text(
        "#!/bin/sh\nexec python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\"\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "BATCH_TASK_INDEX": "2",
        "BATCH_TASK_COUNT": "4",
    }
    out = subprocess.run(argv[1:], env=env, capture_output=True, text=True, check=True).stdout
    got = json.loads(out)
    shard = ["--shard-index", "2", "--shard-count", "4"]
    if kind == "tile":
        # the glob reaches seg unexpanded (seg expands gs:// globs itself)
        assert got == [
            "tile",
            "gs://b/scenes/*.tif",
            "--labels",
            "gs://b/labels/",
            "--out",
            "gs://b/ds.zarr",
            *shard,
        ]
    else:
        assert got == [
            "predict",
            "gs://b/new/*.tif",
            "--checkpoint",
            "gs://b/runs/e1/best.pt",
            "--out",
            "gs://b/pred/",
            *shard,
        ]


def test_tile_without_labels_and_gpu_driver_option(tmp_path: Path) -> None:
    env = {k: v for k, v in BATCH_ENV["tile"].items() if k != "LABELS"}
    job_json = tmp_path / "t.json"
    dry_run("submit_batch.sh", "tile", JOB_JSON=str(job_json), **env)
    job = batch_v1.Job.from_json(job_json.read_text())
    assert list(job.task_groups[0].task_spec.runnables[0].container.commands)[-2] == ""
    _, job, _ = submit("train", tmp_path, GPU_DRIVER="580.95.05")
    assert job.allocation_policy.instances[0].policy.accelerators[0].driver_version == "580.95.05"


@pytest.mark.parametrize(
    ("kind", "env", "message"),
    [
        ("train", {"CONFIG": ""}, "CONFIG"),
        ("predict", {"TASKS": "zero"}, "TASKS must be a positive integer"),
        ("fly", {}, "usage: submit_batch.sh train|tile|predict"),
    ],
)
def test_submit_batch_refuses_bad_input(kind: str, env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        ["bash", str(GCP / "submit_batch.sh"), kind],
        env={**os.environ, **NAMES, "DRY_RUN": "1", **BATCH_ENV.get(kind, {}), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_values_are_json_escaped(tmp_path: Path) -> None:
    _, job, _ = submit("train", tmp_path, RUN_DIR='gs://b/runs/odd "name"\\x&y')
    commands = list(job.task_groups[0].task_spec.runnables[0].container.commands)
    assert commands[commands.index("--out") + 1] == 'gs://b/runs/odd "name"\\x&y'


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["train", "tile", "predict"])
def test_batch_commands_are_accepted_by_the_real_cli(kind: str, tmp_path: Path) -> None:
    """The job's seg command line parses with the real `seg`: it fails on the missing inputs
    (exit 1, one line) and never on an unknown option (a usage error would exit 2)."""
    missing = tmp_path / "nothing-here"
    env_values = {k: str(missing / k.lower()) for k in BATCH_ENV[kind]}
    _, job, _ = submit(kind, tmp_path, TASKS="2", **env_values)
    container = job.task_groups[0].task_spec.runnables[0].container
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "seg").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m seg "$@"\n')
    (bin_dir / "seg").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env |= {"BATCH_TASK_INDEX": "1", "BATCH_TASK_COUNT": "2"}
    argv = list(container.commands)
    argv = argv[1:] if container.entrypoint == "tini" else ["seg", *argv]
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("seg: error: "), result.stderr
    assert "No such option" not in result.stderr


def test_readme_covers_every_script_and_the_three_paths() -> None:
    readme = (GCP / "README.md").read_text()
    for script in SCRIPTS:
        assert script.relative_to(GCP).as_posix() in readme, script
    for needed in (
        "docker run",
        "submit_batch.sh train",
        "submit_batch.sh predict",
        "create_vm.sh",
        "seg queue submit",
        "seg queue status",
        "DRY_RUN=1",
    ):
        assert needed in readme, needed


def test_example_queue_file_is_valid() -> None:
    from seg.jobs.jobs_file import load_jobs

    _, jobs = load_jobs(str(ROOT / "deploy" / "queue" / "overnight.yaml"), "gs://b/night")
    names = [j.name for j in jobs]
    assert names[0] == "tile" and len([n for n in names if n.startswith("lr/")]) == 6
    assert names.index("masks") > names.index("baseline")


def test_example_search_file_is_valid() -> None:
    from seg.jobs.jobs_file import read_plan

    plan = read_plan(str(ROOT / "deploy" / "queue" / "search.yaml"), "gs://b/s1")
    assert [j.name for j in plan.jobs] == ["tile"]
    (search,) = plan.searches
    assert search.upstream == ["tile"] and search.sweep.prune and search.sweep.prune.median
    job = search.job(3, {"optim.lr": 0.001})
    assert job.run_dir == "gs://b/s1/gan/003" and "optim.lr=0.001" in job.argv
    assert job.argv[-2:] == ["--resume", "auto"]
