"""Scenes on the ground: the window grid, raster and vector I/O, labels, polygons. No torch.

May import: the base modules (seg.errors, seg.fs, seg.config, seg.classes, seg.report).
"""
