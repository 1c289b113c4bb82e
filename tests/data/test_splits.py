"""Scene splits: deterministic from the sorted scene list, by scene, explicit lists win."""

from __future__ import annotations

import pytest

from seg.data.splits import assign_splits
from seg.errors import ConfigError
from seg.tile_config import SplitSection


def test_same_answer_whatever_the_input_order_and_seed_changes_it() -> None:
    ids = [f"s{i:02d}" for i in range(20)]
    a = assign_splits(ids, SplitSection())
    assert a == assign_splits(list(reversed(ids)), SplitSection())
    assert sorted(a.values()).count("val") == 2 and sorted(a.values()).count("test") == 2
    assert a != assign_splits(ids, SplitSection(seed=1))


@pytest.mark.parametrize(
    ("n", "want"), [(1, ["train"]), (2, ["train", "val"]), (3, ["test", "train", "val"])]
)
def test_small_sets_keep_a_training_scene(n: int, want: list[str]) -> None:
    assert sorted(assign_splits([f"s{i}" for i in range(n)], SplitSection()).values()) == want


def test_explicit_lists_and_errors() -> None:
    out = assign_splits(
        ["a", "b", "c", "d"], SplitSection(test_scenes=["a"], val_scenes=["b"], val=0, test=0)
    )
    assert out == {"a": "test", "b": "val", "c": "train", "d": "train"}
    with pytest.raises(ConfigError, match="not inputs"):
        assign_splits(["a"], SplitSection(val_scenes=["zz"]))
    with pytest.raises(ConfigError, match="all 0"):
        assign_splits(["a"], SplitSection(train=0, val=0, test=0))
