"""`precision: auto` must not pick emulated bf16: training and prediction follow the same rule."""

from __future__ import annotations

import pytest
import torch

from seg.config import TrainSection
from seg.inference.predictor import pick_precision
from seg.models import precision
from seg.training.runtime import amp_dtype

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert amp_dtype(TrainSection(precision="auto"), CPU) is expected
    assert pick_precision("auto", CPU) is expected
    # An explicit choice is kept whatever the CPU has.
    assert amp_dtype(TrainSection(precision="bf16"), CPU) is torch.bfloat16
    assert pick_precision("bf16", CPU) is torch.bfloat16
    assert amp_dtype(TrainSection(precision="fp32"), CPU) is None


def test_auto_is_fp16_on_cuda() -> None:
    assert precision.auto_dtype(torch.device("cuda", 0)) is torch.float16


def test_the_probe_answers_on_this_cpu() -> None:
    assert isinstance(precision.cpu_has_native_bf16(), bool)
