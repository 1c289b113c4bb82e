"""Conditioning a network on scene metadata (`model.metadata`).

The input is one encoded vector per window (seg.data.scene_metadata): field codes (B, D) then
one presence flag per field (B, F). Where a field is absent (or dropped while training, with
`model.metadata_dropout`) its code is replaced by a learned "missing" embedding, as
Copernicus-FM does for a missing wavelength. A small MLP maps the result to

- "film": a per-channel scale and shift for each decoder block (FiLM, Perez et al. 2018):
  x * (1 + gamma) + beta;
- "deep": one vector added to the deepest encoder features (the FLAIR-1 baseline's way).

The MLP's last layer starts at zero, so an untrained conditioner leaves the plain network's
output exactly as it is.
"""

from __future__ import annotations

import torch
from torch import nn

MECHANISMS = ("film", "deep")


class Conditioner(nn.Module):
    """Metadata (B, D + F) -> a list of (B, 2 * c) for every c in `channels` (film) or one
    (B, c) for the single entry of `channels` (deep)."""

    def __init__(
        self,
        widths: list[int],
        channels: list[int],
        *,
        mechanism: str = "film",
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mechanism not in MECHANISMS:
            raise ValueError(f"unknown conditioning mechanism {mechanism!r}")
        self.widths, self.channels = list(widths), list(channels)
        self.mechanism, self.dropout = mechanism, float(dropout)
        codes = sum(self.widths)
        self.register_buffer(
            "field_of",
            torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths)),
            persistent=False,
        )
        self.missing = nn.Parameter(torch.zeros(codes))
        self.mlp = nn.Sequential(
            nn.Linear(codes, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )
        per = 2 if mechanism == "film" else 1
        self.head = nn.Linear(hidden, per * sum(self.channels))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def size(self) -> int:
        """Length of the metadata vector this conditioner takes."""
        return sum(self.widths) + len(self.widths)

    def blank(self, batch: int, device: torch.device) -> torch.Tensor:
        """A (batch, D + F) vector saying "every field missing"."""
        return torch.zeros(batch, self.size, device=device)

    def forward(self, meta: torch.Tensor) -> list[torch.Tensor]:
        codes = sum(self.widths)
        values, present = meta[:, :codes].float(), meta[:, codes:].float()  # (B, D), (B, F)
        if self.training and self.dropout > 0:
            kept = torch.rand(present.shape, device=present.device) >= self.dropout
            present = present * kept
        field_of: torch.Tensor = self.field_of  # type: ignore[assignment]
        shown = present[:, field_of]  # (B, D): each code position's field's flag
        x = shown * values + (1.0 - shown) * self.missing
        out = self.head(self.mlp(x))  # (B, per * sum(channels))
        per = 2 if self.mechanism == "film" else 1
        return list(torch.split(out, [per * c for c in self.channels], dim=1))


def film(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) scaled and shifted per channel by params (B, 2C) = [gamma | beta]."""
    gamma, beta = params.to(x.dtype).chunk(2, dim=1)  # (B, C) each
    return x * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]
