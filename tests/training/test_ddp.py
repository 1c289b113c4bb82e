"""`torchrun --nproc-per-node 2 -m seg train` on CPU (gloo): DDP end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import ROOT, env, train_args

from seg.checkpoint import load_checkpoint


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*cmd, "-m", "seg", *args], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300
    )


# Plain, and conditioned on scene metadata with field dropout (seg.models.conditioning).
METADATA = ["model.metadata=[lat, lon, gsd]", "model.metadata_dropout=0.3"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], METADATA], ids=["plain", "metadata"])
def test_ddp_two_processes_on_gloo(make_store, tmp_path: Path, extra: list[str]) -> None:
    # 8 train windows, batch 2 per process, 2 processes: 2 steps per epoch.
    store = make_store({"a": "train", "b": "val"}, windows=8)
    run = tmp_path / "run"
    sets = ["train.epochs=1", "train.deterministic=false", *extra]
    done = torchrun(*train_args(store, run, *sets))
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2]  # one log line per epoch, from rank 0 only
    # Validation counted every val window once across both ranks (8 windows of 64 x 64).
    assert sum(sum(row) for row in records[0]["confusion_matrix"]) == 8 * 64 * 64
    state = load_checkpoint(str(run / "last.pt"))
    assert (state["epoch"], state["step"]) == (1, 2)
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    if extra:  # the conditioner trained on both ranks (its last layer starts at zero)
        assert state["metadata"]["fields"][0]["name"] == "lat"
        assert state["state_dict"]["conditioner.head.weight"].abs().sum() > 0
