"""Checkpoints into masks: the predictor, scene prediction, the streaming stitcher, stored
per-window predictions (`seg predict --store`, `seg stitch`) and outputs (COG, probabilities,
polygons).

May import: seg.models, seg.data, seg.geo and the base modules; never seg.training.
"""
