"""`seg queue`: JOBS.yaml files and sweeps, submission to Dask, the worker side, job state and
status tables.

May import: every room below it (seg.training, seg.inference, ...) and the base modules.
"""
