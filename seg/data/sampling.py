"""`data.sampling`: how often each training window is drawn (`rare_classes`, `hard_windows`).

Uniform sampling shows a class in proportion to the windows it appears in; a class on a few
windows of a large store is seen a few times an epoch. Rare-class sampling (Hoyer et al.,
DAFormer, 2022) draws a class first, rare classes more often (P(c) ~ exp((1 - f_c) / T), f_c the
class's share of the labelled pixels), then a window that contains it. A set share of the
draws (`data.null_share`) goes to windows with no foreground at all (only class 0 or
unlabelled): the hard negatives that keep a network from seeing the rare class everywhere.

Hard-window sampling (`hard_windows`) draws a share of the windows (`data.hard_share`) in
proportion to their recent training loss and the rest uniformly: the windows the network still
gets wrong are revisited more often (online hard example mining at the window level; Shrivastava
et al., 2016, mine regions within a batch). Unseen windows count as the hardest seen.

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

    def read_mask(self, i: int) -> np.ndarray: ...


def mask_class_counts(
    dataset: MaskSource, num_classes: int, picks: list[int] | None = None
) -> np.ndarray:
    """(len(picks), K) labelled pixels of each class in the windows `picks` (default: every
    window), read mask by mask."""
    chosen = range(len(dataset)) if picks is None else picks
    counts = np.zeros((len(chosen), num_classes), np.int64)
    for row, i in enumerate(chosen):
        mask = dataset.read_mask(int(i))
        labelled = mask[mask != IGNORE]
        counts[row] = np.bincount(labelled.ravel(), minlength=num_classes)[:num_classes]
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


def hard_window_weights(loss: np.ndarray, share: float) -> np.ndarray:
    """(N,) recent loss per window (NaN = not seen yet) -> (N,) probabilities of drawing each
    window: `share` of the draws in proportion to the loss, the rest uniform."""
    n = len(loss)
    if n == 0:
        return np.zeros(0)
    seen = np.isfinite(loss)
    if not seen.any():
        return np.full(n, 1.0 / n)
    hard = np.where(seen, np.maximum(loss, 0.0), np.nanmax(np.maximum(loss, 0.0)))
    if hard.sum() <= 0:  # every window seen has a loss of 0: nothing to favour
        return np.full(n, 1.0 / n)
    weights = (1.0 - share) / n + share * hard / hard.sum()
    return weights / weights.sum()
