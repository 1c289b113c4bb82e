"""`seg train`: the loop, the per-batch steps (segmentation, pix2pix), losses, validation,
runtime (device, DDP, preflight) and the logbook.

May import: seg.models, seg.data, seg.evaluation, seg.geo and the base modules; never seg.inference.
"""
