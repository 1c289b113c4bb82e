"""Helpers shared by the seg train tests: run the real CLI in a subprocess or in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "unet_mobilenetv2.yaml")

# Tiny, fast and exactly repeatable on CPU.
TINY = [
    "data.batch_size=2",
    "data.num_workers=0",
    "train.deterministic=true",
    "train.precision=fp32",
    "train.log_every_steps=1",
    "train.preview_windows=2",
    "schedule.warmup_steps=1",
    "augment.noise=0.5",
]


def env() -> dict[str, str]:
    # One thread per process: 2 shared cores, and oversubscription is 10x slower here.
    return {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


def train_args(store: Path | str, out: Path | str, *sets: str) -> list[str]:
    args = ["train", "--config", CONFIG, "--data", str(store), "--out", str(out)]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    return args


def seg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seg", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        cwd=ROOT,
    )


def seg_popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "seg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )


def seg_inprocess(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """Run `seg.cli.main` in this process (cheap for error cases); (exit code, stderr)."""
    from seg.cli import main

    monkeypatch.setattr(sys, "argv", ["seg", *args])
    torch.set_num_threads(1)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def weights(path: Path) -> dict[str, torch.Tensor]:
    from seg.checkpoint import load_checkpoint

    return load_checkpoint(str(path))["state_dict"]  # type: ignore[no-any-return]
