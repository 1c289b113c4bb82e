"""The pruning rules of a search that need no other trial: read from one trial's epoch lines
(metrics.jsonl), each says why the trial is hopeless or None. Median pruning compares trials
and is Optuna's (seg.jobs.search).

- loss_ratio: numerator / denominator out of [low, high] for `epochs` epochs in a row, e.g.
  D loss / G adversarial loss, the notes' "limits of loss ratios" for a GAN out of balance;
- collapse: D collapsed or G predicted one class (pix2pix's watch, `train_collapsed`) for
  `epochs` epochs in a row;
- divergence: the train loss not finite, or above `factor` x its lowest so far for `epochs`
  epochs in a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from seg.jobs.search_config import DivergenceRule, PruneSection, RatioRule

Record = dict[str, Any]


def _value(record: Record, key: str) -> float:
    try:
        return float(record[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _run_of(records: list[Record], bad: Callable[[int, Record], bool]) -> int:
    """How many of the last epochs in a row are bad."""
    run = 0
    for i in range(len(records) - 1, -1, -1):
        if not bad(i, records[i]):
            break
        run += 1
    return run


def _ratio(records: list[Record], rule: RatioRule) -> str | None:
    def out(_: int, r: Record) -> bool:
        num, den = _value(r, rule.numerator), _value(r, rule.denominator)
        if not (math.isfinite(num) and math.isfinite(den)) or den == 0:
            return False  # not measured this epoch: no evidence either way
        return not rule.low <= num / den <= rule.high

    if _run_of(records, out) < rule.epochs:
        return None
    last = records[-1]
    ratio = _value(last, rule.numerator) / _value(last, rule.denominator)
    return (
        f"{rule.numerator}/{rule.denominator} = {ratio:.3g}, out of [{rule.low:g}, {rule.high:g}]"
        f" for {rule.epochs} epochs"
    )


def _collapse(records: list[Record], epochs: int) -> str | None:
    if _run_of(records, lambda _, r: _value(r, "train_collapsed") >= 0.5) < epochs:
        return None
    return f"collapse (D won outright or one class predicted) for {epochs} epochs"


def _divergence(records: list[Record], rule: DivergenceRule) -> str | None:
    losses = [_value(r, "train_loss") for r in records]
    if losses and not math.isfinite(losses[-1]):
        return f"diverged: train loss {losses[-1]}"

    def high(i: int, _: Record) -> bool:
        before = [v for v in losses[:i] if math.isfinite(v)]
        return bool(before) and losses[i] > rule.factor * min(before)

    if _run_of(records, high) < rule.epochs:
        return None
    best = min(v for v in losses if math.isfinite(v))
    return (
        f"diverged: train loss {losses[-1]:.4g} over {rule.factor:g}x its best ({best:.4g})"
        f" for {rule.epochs} epochs"
    )


def rule_verdict(records: list[Record], prune: PruneSection) -> str | None:
    """Why the trial with these epoch lines should stop, or None (median pruning apart)."""
    checks = []
    if prune.divergence is not None:
        checks.append(_divergence(records, prune.divergence))
    if prune.loss_ratio is not None:
        checks.append(_ratio(records, prune.loss_ratio))
    if prune.collapse is not None:
        checks.append(_collapse(records, prune.collapse))
    return next((c for c in checks if c), None)
