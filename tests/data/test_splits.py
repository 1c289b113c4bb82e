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
    assert sorted(a.values()).count("val") == 2 and "test" not in a.values()
    assert a != assign_splits(ids, SplitSection(seed=1))


@pytest.mark.parametrize(
    ("n", "want"),
    [(1, ["train"]), (2, ["train", "val"]), (4, ["train", "train", "train", "val"])],
)
def test_small_sets_keep_a_training_scene(n: int, want: list[str]) -> None:
    assert sorted(assign_splits([f"s{i}" for i in range(n)], SplitSection()).values()) == want


def test_a_test_split_asked_for_takes_a_scene_once_there_are_three() -> None:
    asked = SplitSection(train=0.8, test=0.1)
    assert sorted(assign_splits(["a", "b", "c"], asked).values()) == ["test", "train", "val"]


def test_by_default_every_scene_but_the_validation_share_is_trained_on() -> None:
    """The issue's user: 54 training scenes tiled with the defaults, 0.9 / 0.1 by scene and no
    test split (a test split would take scenes the user gave for training)."""
    out = assign_splits([f"s{i:02d}" for i in range(54)], SplitSection())
    assert sorted(set(out.values())) == ["train", "val"]
    assert list(out.values()).count("val") == 5 and list(out.values()).count("train") == 49


def test_explicit_lists_and_errors() -> None:
    out = assign_splits(
        ["a", "b", "c", "d"], SplitSection(test_scenes=["a"], val_scenes=["b"], val=0, test=0)
    )
    assert out == {"a": "test", "b": "val", "c": "train", "d": "train"}
    with pytest.raises(ConfigError, match="not inputs"):
        assign_splits(["a"], SplitSection(val_scenes=["zz"]))
    with pytest.raises(ConfigError, match="all 0"):
        assign_splits(["a"], SplitSection(train=0, val=0, test=0))


def _grid(size: int, stride: int, extent: int) -> list[tuple[int, int, int, int]]:
    offs = list(range(0, extent - size + 1, stride))
    return [(r, c, size, size) for r in offs for c in offs]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_block_split_leaves_no_shared_pixel_between_train_and_val(seed: int) -> None:
    from seg.data.splits import _overlap, block_split

    windows = _grid(512, 256, 2048)  # 7 x 7 overlapping windows of one scene
    cfg = SplitSection(val=0.2, test=0.1, seed=seed, blocks=True)
    parts = block_split(windows, 512, cfg, "s")
    assert parts["train"] and parts["val"] and parts["test"]
    every = [i for idx in parts.values() for i in idx]
    assert len(every) == len(set(every))  # a window is in one split at most
    for held in ("val", "test"):
        for i in parts["train"]:
            assert not any(_overlap(windows[i], windows[j]) for j in parts[held])
    assert parts == block_split(windows, 512, cfg, "s")  # the same every time
    kampala = block_split(_grid(512, 256, 1024), 512, SplitSection(blocks=True), "k")
    assert len(kampala["val"]) >= 1 and len(kampala["train"]) >= 3  # one 1024 px scene works


def test_blocks_only_when_no_scene_is_held_out() -> None:
    cfg = SplitSection(blocks=True)
    assert assign_splits(["only"], cfg) == {"only": "blocks"}
    many = assign_splits([f"s{i}" for i in range(10)], cfg)
    assert "blocks" not in many.values()  # scenes can be held out: no block split


def test_a_scene_too_small_for_a_block_split_is_one_clear_error() -> None:
    from seg.data.splits import block_split
    from seg.errors import InputError

    with pytest.raises(InputError, match="too few to split inside it"):
        block_split([(0, 0, 512, 512)], 512, SplitSection(blocks=True), "tiny")


def test_one_scene_tiled_with_blocks_trains_and_validates_apart(tmp_path, seg_run) -> None:
    from conftest import synthetic_pair, write_geotiff

    from seg.data.dataset import WindowDataset
    from seg.data.store import WindowStore
    from seg.data.window_prep import Normalisation

    image, mask = synthetic_pair(256, 256, 3, seed=0)
    scene = write_geotiff(tmp_path / "s.tif", image)
    write_geotiff(tmp_path / "s_mask.tif", mask)
    store = tmp_path / "ds.zarr"
    code, _, err = seg_run(
        "tile", scene, "--labels", tmp_path, "--size", "64", "--stride", "32", "--out", store,
        "--set", "splits.blocks=true", "-q",
    )  # fmt: skip
    assert code == 0, err
    ws = WindowStore.open(str(store))
    assert ws.scene_ids("train") == ws.scene_ids("val") == ["s"]
    parts = ws.scene("s").attrs.window_splits
    norm = Normalisation.from_store(ws, ["s"])
    train = WindowDataset(str(store), ["s"], norm, split="train")
    val = WindowDataset(str(store), ["s"], norm, split="val")
    assert [int(i) for _, i in train.index] == parts["train"]
    assert [int(i) for _, i in val.index] == parts["val"]
    assert len(train) + len(val) < len(ws.scene("s"))  # the gap windows are in neither
