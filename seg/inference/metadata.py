"""Scene metadata for a conditioned network at prediction time: the scene's vector, encoded by
the checkpoint's codec exactly as training encoded its scenes (seg.data.scene_metadata), and
bound to the predictor for that scene."""

from __future__ import annotations

import functools

from seg.checkpoint import CheckpointInfo
from seg.data.scene_metadata import MetadataCodec, SceneFacts
from seg.inference.loading import WindowModel
from seg.report import Reporter


def conditioned(
    predictor: WindowModel, info: CheckpointInfo, facts: SceneFacts, reporter: Reporter
) -> WindowModel:
    """The predictor with the scene's metadata vector bound in, for a conditioned network (a
    field the scene lacks takes the learned "missing" embedding: one warning per scene)."""
    if info.metadata is None:
        return predictor
    vector, missing = MetadataCodec.from_json(info.metadata).encode(facts)
    if missing:
        reporter.warn(
            f"{facts.name}: no {', '.join(missing)} in its tags, sidecar or georeference;"
            " predicting with the model's 'missing' embedding for them"
        )
    return functools.partial(predictor, meta=vector)
