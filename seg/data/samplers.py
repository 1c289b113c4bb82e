"""Which windows an epoch visits, in which order, with which augmentation seed.

Seeded by (run seed, epoch, position), never by worker count or resume point: a run killed and
resumed visits exactly the windows, in exactly the order, with exactly the augmentations of a
run that was never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 32-bit seed for one sample, from the run seed, epoch and position in the epoch."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded shuffled order for one epoch and one DDP rank, yielding (index, sample seed).

    Produces exactly `batches * batch_size` items (consecutive permutations when an epoch is
    longer than the data), starting at batch `start_batch` so a resumed run skips what was done
    without reading it. With `weights` (N,) the items are drawn with replacement, window i with
    probability weights[i] (seg.data.sampling), from the same seeds.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        batches: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
        weights: np.ndarray | None = None,
    ) -> None:
        self.n, self.batch_size, self.batches = n, batch_size, batches
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.start_batch = start_batch
        if weights is not None and len(weights) != n:
            raise ValueError(f"{len(weights)} sampling weights for {n} windows")
        self.weights = weights

    def __len__(self) -> int:
        return max(0, self.batches - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        need = self.batches * self.batch_size * self.world  # all ranks together
        if self.n == 0:
            return
        if self.weights is not None:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.choice(self.n, need, replace=True, p=self.weights)
        else:
            orders: list[np.ndarray] = []
            k = 0
            while k * self.n < need:
                rng = np.random.default_rng([self.seed, self.epoch, k])
                orders.append(rng.permutation(self.n))
                k += 1
            order = np.concatenate(orders)[:need]
        positions = np.arange(need)[self.rank :: self.world]  # this rank's share
        first = self.start_batch * self.batch_size
        for pos in positions[first:]:
            yield int(order[pos]), sample_seed(self.seed, self.epoch, int(pos))
