"""Masks against truth: confusion matrices and metrics, `seg eval` reports, overlays.

May import: seg.geo and the base modules (so training's validation can use its metrics).
"""
