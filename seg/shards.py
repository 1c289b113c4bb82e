"""Which share of the inputs this machine works on (`--shard-index I --shard-count N`).

Many machines can tile or predict one list of scenes with nothing shared but the bucket: each
takes every N-th input from I. The defaults come from Cloud Batch's array-job variables
(BATCH_TASK_INDEX / BATCH_TASK_COUNT), so a Batch task needs no flags.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from seg.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def of(cls, index: int | None = None, count: int | None = None) -> Shard:
        """The shard the options name, each defaulting to its Cloud Batch variable, then 0 / 1."""
        index = index if index is not None else _env_int("BATCH_TASK_INDEX")
        count = count if count is not None else _env_int("BATCH_TASK_COUNT")
        count, index = (1 if count is None else count), (0 if index is None else index)
        if count < 1:
            raise ConfigError(f"--shard-count {count} must be 1 or more")
        if not 0 <= index < count:
            raise ConfigError(
                f"--shard-index {index} must be in 0..{count - 1} (--shard-count {count})"
            )
        return cls(index, count)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def pick(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every count-th, starting at index (order kept)."""
        return list(items[self.index :: self.count])


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name}={value!r} is not an integer; unset it or fix it") from None
