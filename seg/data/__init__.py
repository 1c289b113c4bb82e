"""Scenes into training data: the zarr window store and its schema, band statistics, splits,
`seg tile`, the torch Dataset, samplers, augmentation, window preparation, synthetic samples.

May import: seg.geo and the base modules.
"""
