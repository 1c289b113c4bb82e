"""Which code made an artifact: recorded in every checkpoint, `config.yaml` and mask.

The seg version, the git commit of the source tree when seg runs from a checkout (or the one the
Docker image was built from: `SEG_GIT_COMMIT`, set by the Dockerfile), and the versions of torch
and segmentation-models-pytorch. Training adds the `--data` URL and the store's fingerprint.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import seg

COMMIT_ENV = "SEG_GIT_COMMIT"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout seg runs from (+ "-dirty" with local changes), else the
    image's build-time commit, else None."""
    root = Path(seg.__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()  # fmt: skip
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()  # fmt: skip
            return head + ("-dirty" if dirty else "") if head else None
        except (OSError, subprocess.SubprocessError):
            pass
    built = os.environ.get(COMMIT_ENV, "").strip()
    return built if built and built != "unknown" else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def code_provenance() -> dict[str, Any]:
    """What made this artifact: versions and commit (plain JSON values)."""
    return {
        "seg": seg.__version__,
        "commit": git_commit(),
        "torch": _version("torch"),
        "segmentation_models_pytorch": _version("segmentation-models-pytorch"),
        "python": platform.python_version(),
    }


def as_comment(provenance: dict[str, Any]) -> str:
    """YAML comment lines (a saved config.yaml stays a valid --config)."""
    lines = ["# made by:"]
    for key, value in provenance.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, dict))
        lines.append(f"#   {key}: {value}")
    return "\n".join(lines) + "\n"
