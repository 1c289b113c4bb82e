"""A network's class probabilities calibrated on labelled windows it did not train on.

`seg predict` estimates each scene's class shares by EM (`seg.inference.priors`), which reads
the network's posteriors as probabilities under its training shares. A network trained with
Dice, cut-mix and heavy augmentation on a few windows is neither: its posteriors are too sure
and lean to whatever its loss favoured, and EM turns that lean into a wrong estimate
(docs/recipe.md rows 111, 120). Bias-corrected temperature scaling (Alexandari, Kundaje &
Shrikumar 2020, "Maximum likelihood with bias-corrected calibration is hard-to-beat at label
shift adaptation") fits one temperature T and a bias b per class on held-out pixels:

    calibrated log p = log p / T + b   (renormalised over classes)

and the shares it describes are then those of the held-out pixels (`prior`), EM's reference.
Fitting is by maximum likelihood on the validation pixels; the fit never changes the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# A temperature outside this range means the held-out pixels say little (one class, a handful
# of pixels): the fit is clamped rather than trusted to extremes.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.25, 8.0
MAX_BIAS = 5.0  # log-odds: a class shifted by more is one the held-out pixels barely hold
MIN_PIXELS = 1000  # fewer held-out pixels than this: no calibration
FIT_STEPS = 60


@dataclass(frozen=True)
class Calibration:
    """T, a bias per class and the held-out pixels' class shares (the calibrated network's
    reference shares)."""

    temperature: float
    bias: tuple[float, ...]
    prior: tuple[float, ...]

    def log_probs(self, log_probs: np.ndarray) -> np.ndarray:
        """(N, K) log-probabilities -> calibrated (N, K) log-probabilities."""
        z = np.asarray(log_probs, np.float64) / self.temperature + np.asarray(self.bias)
        return z - np.logaddexp.reduce(z, axis=1, keepdims=True)

    def probs(self, probs: np.ndarray) -> np.ndarray:
        """(N, K) probabilities -> calibrated (N, K) probabilities (float64)."""
        return np.exp(self.log_probs(np.log(np.maximum(np.asarray(probs, np.float64), 1e-12))))

    def to_json(self) -> dict[str, Any]:
        return {
            "temperature": round(self.temperature, 5),
            "bias": [round(x, 5) for x in self.bias],
            "prior": [round(x, 6) for x in self.prior],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        return cls(
            float(d["temperature"]),
            tuple(float(x) for x in d["bias"]),
            tuple(float(x) for x in d["prior"]),
        )


def fit_calibration(log_probs: np.ndarray, labels: np.ndarray) -> Calibration | None:
    """(N, K) log-probabilities (or logits) of held-out pixels and their (N,) labels (0..K-1)
    -> the `Calibration` of maximum likelihood; None when there are too few pixels."""
    z = torch.as_tensor(np.asarray(log_probs, np.float32), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels, np.int64))
    n, k = z.shape
    if n < MIN_PIXELS:
        return None
    z = z - torch.logsumexp(z, dim=1, keepdim=True)  # logits and log-probabilities alike
    counts = torch.bincount(y, minlength=k).double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # A class absent from the held-out pixels keeps bias 0 (nothing says where it should go).
    seen = counts > 0
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)

    def seen_bias() -> torch.Tensor:
        return torch.where(seen, bias, torch.zeros_like(bias))

    opt = torch.optim.LBFGS(
        [log_t, bias], lr=0.5, max_iter=FIT_STEPS, line_search_fn="strong_wolfe"
    )

    def nll() -> torch.Tensor:
        opt.zero_grad()
        logits = z / log_t.exp() + seen_bias()
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        return loss

    opt.step(nll)
    with torch.no_grad():
        t = float(log_t.exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE))
        b = seen_bias().clamp(-MAX_BIAS, MAX_BIAS)
        b = torch.where(seen, b - b[seen].mean(), b)  # only differences between classes matter
        calibrated = torch.softmax(z / t + b, dim=1)
        prior = calibrated.mean(dim=0)
    return Calibration(t, tuple(float(x) for x in b), tuple(float(x) for x in prior))
