"""`loss.class_weights: auto`: weights that lift rare classes, measured from the training labels.

Each class weighs (frequency)^-1/2, scaled so that the average weight of a training pixel is 1
(the loss keeps its size, so the learning rate means the same). The square root is the usual
middle way: plain inverse frequency lets a class of 0.1 % of the pixels dominate every batch.
Frequencies come from an evenly spaced subsample of the training windows' masks (or from every
window's counts when rare-class sampling has read them all already).
"""

from __future__ import annotations

import numpy as np

from seg.data.sampling import MaskSource, mask_class_counts

MAX_WINDOWS = 256  # masks read to measure the frequencies (decoding one is ~1 ms)
MAX_RATIO = 20.0  # no class weighs more than this many times the most common one


def class_frequencies(
    dataset: MaskSource, num_classes: int, counts: np.ndarray | None = None
) -> np.ndarray:
    """(K,) share of each class among the labelled pixels of the training windows; from the
    (N, K) per-window `counts` when given, else from a subsample of the masks."""
    if counts is None:
        n = len(dataset)
        picks = np.linspace(0, n - 1, min(n, MAX_WINDOWS)).round().astype(int).tolist()
        counts = mask_class_counts(dataset, num_classes, picks)
    totals = counts.sum(axis=0)
    total = totals.sum()
    return totals / total if total else np.full(num_classes, 1.0 / num_classes)


def balanced_weights(freq: np.ndarray) -> list[float]:
    """(K,) frequencies -> weights ~ freq^-1/2, mean weight per pixel 1, capped at MAX_RATIO."""
    seen = freq > 0
    raw = np.where(seen, np.power(np.maximum(freq, 1e-12), -0.5), 0.0)
    top = raw[seen].min() * MAX_RATIO if seen.any() else 1.0
    raw = np.where(seen, np.minimum(raw, top), top)  # an unseen class: the cap
    scale = float((freq * raw).sum()) or 1.0
    return [round(float(w / scale), 4) for w in raw]
