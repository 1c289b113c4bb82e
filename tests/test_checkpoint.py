"""Checkpoints load without executing code from the file, and bad files are one clear error."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from seg.checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint, save_checkpoint
from seg.errors import CheckpointError


class _Payload:
    """Unpickling this runs `touch <marker>`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_round_trip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    info = CheckpointInfo(
        model={"name": "unet_mobilenetv2", "in_channels": 1, "num_classes": 1},
        class_names=("a",),
        bands=(1,),
        mean=(0.0,),
        std=(1.0,),
        size=32,
    )
    save_checkpoint(str(path), info, {"w": torch.arange(3.0)})
    state = load_checkpoint(str(path))
    assert torch.equal(state["state_dict"]["w"], torch.arange(3.0))
    assert state["class_names"] == ["a"] and state["format"] == "seg-checkpoint/1"
    assert read_checkpoint(str(path))[0] == info  # the description reads back as written
    assert [p.name for p in tmp_path.iterdir()] == ["ok.pt"]  # no temporary file left


def test_code_in_a_checkpoint_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"format": "seg-checkpoint/1", "x": _Payload(marker)}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not allowed to load safely"):
        load_checkpoint(str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"hello, not a checkpoint\n", b"", pickle.dumps({"format": "seg-checkpoint/1"})[:5]],
    ids=["text", "empty", "truncated"],
)
def test_unreadable_files_are_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(str(path))


def test_foreign_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a seg checkpoint"):
        load_checkpoint(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pt"))
