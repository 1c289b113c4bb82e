"""`loss.class_weights: auto`: weights that lift rare classes, measured from the training labels.

Each class weighs (frequency)^-1/2, scaled so that the average weight of a training pixel is 1
(the loss keeps its size, so the learning rate means the same). The square root is the usual
middle way: plain inverse frequency lets a class of 0.1 % of the pixels dominate every batch.
Frequencies come from an evenly spaced subsample of the training windows' masks.
"""

from __future__ import annotations

import numpy as np

from seg.classes import IGNORE
from seg.config import DataSection
from seg.data.dataset import WindowDataset
from seg.data.sampling import rare_class_weights, window_class_counts

MAX_WINDOWS = 256  # masks read to measure the frequencies (decoding one is ~1 ms)
MAX_RATIO = 20.0  # no class weighs more than this many times the most common one


def class_frequencies(dataset: WindowDataset, num_classes: int) -> np.ndarray:
    """(K,) share of each class among the labelled pixels of the training windows."""
    n = len(dataset)
    picks: list[int] = np.linspace(0, n - 1, min(n, MAX_WINDOWS)).round().astype(int).tolist()
    counts = np.zeros(num_classes, np.int64)
    for i in picks:
        _, mask = dataset.read(int(i))
        labelled = mask[mask != IGNORE]
        counts += np.bincount(labelled.ravel(), minlength=num_classes)[:num_classes]
    total = counts.sum()
    return counts / total if total else np.full(num_classes, 1.0 / num_classes)


def balanced_weights(freq: np.ndarray) -> list[float]:
    """(K,) frequencies -> weights ~ freq^-1/2, mean weight per pixel 1, capped at MAX_RATIO."""
    seen = freq > 0
    raw = np.where(seen, np.power(np.maximum(freq, 1e-12), -0.5), 0.0)
    top = raw[seen].min() * MAX_RATIO if seen.any() else 1.0
    raw = np.where(seen, np.minimum(raw, top), top)  # an unseen class: the cap
    scale = float((freq * raw).sum()) or 1.0
    return [round(float(w / scale), 4) for w in raw]


def window_weights(
    dataset: WindowDataset, data: DataSection, num_classes: int
) -> np.ndarray | None:
    """`data.sampling`: None (uniform), or (N,) probabilities of drawing each training window."""
    if data.sampling == "uniform":
        return None
    counts = window_class_counts(dataset, num_classes)
    return rare_class_weights(
        counts, temperature=data.sampling_temperature, null_share=data.null_share
    )
