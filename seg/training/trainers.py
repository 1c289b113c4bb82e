"""Training steps by kind: the model registry (`seg.models.MODELS`) says which kind trains each
model; this dict says which class does that work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seg.models import model_entry
from seg.training.pix2pix import AdversarialStep
from seg.training.segmentation import SegmentationStep
from seg.training.steps import Step, StepSpec

if TYPE_CHECKING:
    from seg.config import TrainConfig

TRAINERS: dict[str, type[Step]] = {
    "segmentation": SegmentationStep,
    "adversarial": AdversarialStep,
}


def build_step(cfg: TrainConfig, spec: StepSpec) -> Step:
    """The training step for `cfg.model.name`, constructed."""
    return TRAINERS[model_entry(cfg.model.name).trainer](cfg, spec)
