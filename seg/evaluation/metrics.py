"""Confusion-matrix metrics: per-class IoU, F1, precision, recall, mean IoU.

One streaming accumulator serves validation in `seg train` and `seg eval`; pixels labelled 255
(ignore) never count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg.classes import IGNORE


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: rows truth, columns prediction; ignore/out-of-range truth skipped."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    truth = np.asarray(truth).ravel().astype(np.int64)
    keep = (truth != IGNORE) & (truth >= 0) & (truth < num_classes)
    idx = truth[keep] * num_classes + np.clip(pred[keep], 0, num_classes - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(cm: np.ndarray, class_names: list[str] | None = None) -> dict[str, Any]:
    """Per-class and mean metrics from a confusion matrix. Classes absent from both truth and
    prediction get NaN-free zeros but are left out of the means."""
    cm = np.asarray(cm, np.float64)
    k = cm.shape[0]
    names = class_names or [str(i) for i in range(k)]
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = (tp + fp + fn) > 0

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    iou = ratio(tp, tp + fp + fn)
    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    total = cm.sum()
    per_class = {
        name: {
            "iou": float(iou[i]),
            "f1": float(f1[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "support": int(cm[i].sum()),
        }
        for i, name in enumerate(names)
    }
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "mf1": float(f1[present].mean()) if present.any() else 0.0,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


class ConfusionMatrix:
    """Streaming accumulator: `update(pred, truth)` per batch, `compute()` at the end."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = class_names
        self.cm = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        self.cm += confusion_matrix(pred, truth, self.num_classes)

    def compute(self) -> dict[str, Any]:
        return scores(self.cm, self.class_names)


# --- boundary F1: how well predicted outlines follow the true ones --------------------------


def _shift_any(a: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a (H, W) bool array by a (2r+1)x(2r+1) square (Chebyshev radius r)."""
    out = a.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def boundary(region: np.ndarray) -> np.ndarray:
    """Pixels of a (H, W) bool region with a 4-neighbour outside it (the image edge is not one)."""
    inner = region.copy()
    inner[1:] &= region[:-1]
    inner[:-1] &= region[1:]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    return region & ~inner


def boundary_counts(
    pred: np.ndarray, truth: np.ndarray, cls: int, tolerance: int = 2
) -> np.ndarray:
    """[pred boundary px near a true one, pred boundary px, true boundary px near a predicted
    one, true boundary px] for class `cls`; (H, W) masks, truth 255 = ignore (left out).
    Sum these over scenes, then `boundary_f1`."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    keep = truth != IGNORE
    b_pred = boundary(pred == cls) & keep
    b_true = boundary(truth == cls) & keep
    near_true = _shift_any(b_true, tolerance)
    near_pred = _shift_any(b_pred, tolerance)
    return np.array(
        [(b_pred & near_true).sum(), b_pred.sum(), (b_true & near_pred).sum(), b_true.sum()],
        np.int64,
    )


def boundary_f1(counts: np.ndarray) -> float:
    """F1 of boundary precision and recall from summed `boundary_counts` (Csurka et al. 2013)."""
    hit_p, n_p, hit_t, n_t = (float(x) for x in counts)
    precision = hit_p / n_p if n_p else 0.0
    recall = hit_t / n_t if n_t else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def metric_value(name: str, result: dict[str, Any]) -> float:
    """`miou`, `mf1`, `accuracy`, `loss` or `<iou|f1|precision|recall>/<class>` from a result."""
    if name == "loss":
        return float(result["val_loss"])
    if "/" in name:
        metric, cls = name.split("/", 1)
        return float(result["per_class"][cls][metric])
    return float(result[name])
