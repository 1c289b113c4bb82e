"""`data.sampling: rare_classes`: how often each training window is drawn.

Uniform sampling shows a class in proportion to the windows it appears in; a class on a few
windows of a large store is seen a few times an epoch. Rare-class sampling (Hoyer et al.,
DAFormer, 2022) draws a class first, rare classes more often (P(c) ~ exp((1 - f_c) / T), f_c the
class's share of the labelled pixels), then a window that contains it. A set share of the
draws (`data.null_share`) goes to windows with no foreground at all (only class 0 or
unlabelled): the hard negatives that keep a network from seeing the rare class everywhere.

The draws themselves are seeded by `EpochSampler`, so a resumed run repeats them exactly.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from seg.classes import IGNORE

# A window "contains" a class when the class covers at least this share of its labelled
# pixels: a few stray pixels at a window's edge do not make it a window of that class.
MIN_SHARE = 0.005


class MaskSource(Protocol):
    def __len__(self) -> int: ...

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


def window_class_counts(dataset: MaskSource, num_classes: int) -> np.ndarray:
    """(N, K) labelled pixels of each class in each of the dataset's N windows (every mask read)."""
    counts = np.zeros((len(dataset), num_classes), np.int64)
    for i in range(len(dataset)):
        mask = dataset.read(i)[1]
        labelled = mask[mask != IGNORE]
        counts[i] = np.bincount(labelled.ravel(), minlength=num_classes)[:num_classes]
    return counts


def class_draw_probabilities(freq: np.ndarray, temperature: float) -> np.ndarray:
    """(K,) pixel shares -> (K,) probability of drawing each class: softmax((1 - f) / T)."""
    logits = (1.0 - np.asarray(freq, np.float64)) / temperature
    p = np.exp(logits - logits.max())
    return p / p.sum()


def rare_class_weights(counts: np.ndarray, *, temperature: float, null_share: float) -> np.ndarray:
    """(N, K) per-window class counts -> (N,) probabilities of drawing each window.

    Classes found in no window are left out (and their share goes to the others); without a
    window free of foreground, `null_share` is given to the classes as well."""
    n = len(counts)
    if n == 0:
        return np.zeros(0)
    labelled = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    has = counts / labelled >= MIN_SHARE  # (N, K) window i is a window of class c
    freq = counts.sum(axis=0) / max(int(counts.sum()), 1)
    p_class = class_draw_probabilities(freq, temperature) * has.any(axis=0)
    if p_class.sum() == 0:  # no labels at all: uniform
        return np.full(n, 1.0 / n)
    p_class /= p_class.sum()
    # P(window) = sum over c of P(c) * [window has c] / (windows with c)
    per_window = has / np.maximum(has.sum(axis=0), 1)  # (N, K), each column sums to 1 or 0
    weights = per_window @ p_class
    null = counts[:, 1:].sum(axis=1) == 0  # nothing but class 0 (or unlabelled)
    if null_share > 0 and null.any():
        weights = (1.0 - null_share) * weights + null_share * null / null.sum()
    return weights / weights.sum()
