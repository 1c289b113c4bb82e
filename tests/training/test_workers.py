"""`data.num_workers: auto`: no worker processes where the network trains on the CPU from a local
store (their work takes cores from torch's threads), two on a GPU or from a gs:// store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import train_one_step

from seg.config import DataSection, TrainConfig, load_config
from seg.training.runtime import resolve_workers

Run = Callable[..., tuple[int, str, str]]
CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("name", ["unet_mobilenetv2", "pix2pix"])
def test_the_shipped_configs_leave_the_workers_to_the_machine(name: str) -> None:
    assert load_config(TrainConfig, f"configs/{name}.yaml").data.num_workers == "auto"


@pytest.mark.parametrize(
    ("device", "remote", "workers"),
    [(CPU, False, 0), (CPU, True, 2), (CUDA, False, 2), (CUDA, True, 2)],  # as the configs say
)
def test_auto_is_none_on_the_cpu_from_a_local_store(
    device: torch.device, remote: bool, workers: int
) -> None:
    cfg = TrainConfig(data=DataSection(num_workers="auto"))
    resolved = resolve_workers(cfg, device, remote)
    assert resolved.data.num_workers == workers
    assert resolved.data.workers() == workers
    assert cfg.data.num_workers == "auto"  # the given config is not changed


def test_a_given_number_is_kept_and_an_unresolved_auto_is_refused() -> None:
    given = TrainConfig(data=DataSection(num_workers=3))
    assert resolve_workers(given, CPU, False).data.workers() == 3
    with pytest.raises(ValueError, match="resolve_workers"):
        DataSection(num_workers="auto").workers()


@pytest.mark.slow
def test_train_resolves_auto_and_saves_the_number(tmp_path: Path, seg_run: Run) -> None:
    run = train_one_step(seg_run, tmp_path, sets=("data.num_workers=auto",))
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["num_workers"] == 0
