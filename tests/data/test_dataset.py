"""seg.data.dataset, seg.data.augment, seg.training.losses on tiny stores from the store writer."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seg.config import AugmentSection, LossSection
from seg.data.augment import apply_augment, build_augment, ramp
from seg.data.dataset import WindowDataset
from seg.data.samplers import EpochSampler
from seg.data.store import WindowStore
from seg.data.window_prep import Normalisation
from seg.training.losses import build_loss


def dataset(path: Path, split: str, augment: AugmentSection | None = None) -> WindowDataset:
    store = WindowStore.open(str(path))
    train = store.scene_ids("train")
    norm = Normalisation.from_store(store, train)
    return WindowDataset(str(path), store.scene_ids(split), norm, augment=augment)


def test_windows_are_normalised_with_train_statistics(make_store) -> None:
    path = make_store({"a": "train", "b": "train", "c": "val"}, windows=3)
    ds = dataset(path, "train")
    assert len(ds) == 6
    images = torch.stack([ds[i][0] for i in range(len(ds))])  # (6, C, 64, 64)
    # Normalised with the exact statistics of exactly these windows: mean 0, std 1 per band.
    assert torch.allclose(images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(images.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    assert len(dataset(path, "val")) == 3


@pytest.mark.slow
def test_pickled_dataset_opens_its_own_handle_in_workers(make_store) -> None:
    path = make_store(windows=4)
    ds = dataset(path, "train")
    ds[0]  # opens a handle in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays == []
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    direct = torch.stack([ds[i][0] for i in range(4)])
    assert torch.equal(torch.cat([b[0] for b in batches]), direct)


@pytest.mark.parametrize(("bands", "dtype"), [(1, "uint16"), (5, "float32"), (3, "uint8")])
def test_augment_any_band_count_and_dtype_moves_image_and_mask_together(
    make_store, bands: int, dtype: str
) -> None:
    path = make_store(bands=bands, dtype=dtype)
    aug = AugmentSection(
        hflip=1.0, vflip=0.0, rot90=0.0, brightness_contrast=1.0, noise=1.0, scale_crop=0.0
    )
    ds = dataset(path, "train", aug)
    plain = dataset(path, "train")
    (image, mask), (ref_image, ref_mask) = ds[(1, 7)], plain[1]
    assert image.shape == (bands, 64, 64) and image.dtype == torch.float32
    assert torch.equal(mask, ref_mask.flip(-1))  # flipped with the image
    # Brightness/contrast/noise act on normalised floats without clipping to [0, 1].
    assert image.min() < -0.5 and image.max() > 1.5
    assert not torch.equal(image, ref_image.flip(-1))
    again, _ = ds[(1, 7)]
    assert torch.equal(image, again)  # a function of the sample seed only


def test_band_jitter_changes_each_band_by_its_own_gain_and_offset() -> None:
    pipeline = build_augment(
        AugmentSection(hflip=0, vflip=0, rot90=0, band_jitter=1.0, band_jitter_limit=0.3), 32
    )
    assert pipeline is not None
    image = np.random.default_rng(0).normal(size=(3, 32, 32)).astype(np.float32)
    mask = np.zeros((32, 32), np.uint8)
    out, same_mask = apply_augment(pipeline, image, mask, seed=5)
    assert np.array_equal(same_mask, mask)
    fits = []
    for band in range(3):  # out = gain * in + offset, exactly, with |gain - 1|, |offset| <= 0.3
        gain, offset = np.polyfit(image[band].ravel(), out[band].ravel(), 1)
        assert np.allclose(out[band], gain * image[band] + offset, atol=1e-4)
        assert abs(gain - 1) <= 0.3 + 1e-5 and abs(offset) <= 0.3 + 1e-5
        fits.append((round(float(gain), 4), round(float(offset), 4)))
    assert len(set(fits)) == 3  # one draw per band, not one shared by all
    again, _ = apply_augment(pipeline, image, mask, seed=5)
    assert np.array_equal(out, again)


def test_ramp_interpolates_the_knots_linearly() -> None:
    w = ramp(5, 3)  # knots at pixels 0, 2 and 4
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(w @ np.array([0.0, 1.0, 4.0]), [0.0, 0.5, 1.0, 2.5, 4.0])


@pytest.mark.parametrize("grid", [2, 3, 5])
def test_illumination_adds_one_smooth_field_to_every_band(grid: int) -> None:
    pipeline = build_augment(
        AugmentSection(
            hflip=0, vflip=0, rot90=0, illumination=1.0, illumination_std=0.7,
            illumination_grid=grid,
        ),
        64,
    )  # fmt: skip
    assert pipeline is not None
    image = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), np.uint8)
    fields = []
    for seed in range(20):
        out, same_mask = apply_augment(pipeline, image, mask, seed=seed)
        assert np.array_equal(same_mask, mask)
        field = out - image  # (3, 64, 64)
        assert np.allclose(field, field[:1], atol=1e-5)  # the same field on every band
        # piecewise linear between grid x grid knots: no pixel-to-pixel jumps, and the field
        # varies across the window (not one brightness for the whole window)
        step = np.abs(np.diff(field[0], axis=0)).max(), np.abs(np.diff(field[0], axis=1)).max()
        assert max(step) < 4 * 0.7 * (grid - 1) / 63 * 3
        assert field[0].std() > 0
        fields.append(field[0])
    corners = np.array([[f[0, 0], f[0, -1], f[-1, 0], f[-1, -1]] for f in fields])
    assert 0.3 < corners.std() < 1.2  # N(0, 0.7) at the knots
    again, _ = apply_augment(pipeline, image, mask, seed=3)
    assert np.array_equal((again - image)[0], fields[3])


def test_scale_crop_keeps_ignore_label_and_class_ids() -> None:
    pipeline = build_augment(AugmentSection(scale_crop=1.0, scale_min=0.5, scale_max=0.6), 64)
    assert pipeline is not None
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 1
    mask[:8] = 255
    image = np.random.default_rng(0).normal(size=(4, 64, 64)).astype(np.float32)
    values = set()
    for seed in range(8):
        img, out = apply_augment(pipeline, image, mask, seed)
        assert img.shape == (4, 64, 64) and out.shape == (64, 64)
        values |= set(np.unique(out).tolist())
    assert values <= {0, 1, 255}


def test_epoch_sampler_is_seeded_sharded_and_resumable() -> None:
    full = list(EpochSampler(10, 2, 4, seed=1, epoch=0))
    assert len(full) == 8 and len({i for i, _ in full}) == 8
    assert full == list(EpochSampler(10, 2, 4, seed=1, epoch=0))
    assert full != list(EpochSampler(10, 2, 4, seed=1, epoch=1))
    assert list(EpochSampler(10, 2, 4, seed=1, epoch=0, start_batch=2)) == full[4:]
    ranks = [list(EpochSampler(10, 2, 3, seed=1, epoch=0, rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}
    longer = list(EpochSampler(3, 2, 4, seed=1, epoch=0))  # epoch longer than the data
    assert len(longer) == 8


@pytest.mark.parametrize(
    "name", ["ce", "dice", "ce_dice", "focal", "focal_dice", "lovasz", "ce_lovasz"]
)
def test_losses_ignore_255(name: str) -> None:
    loss = build_loss(LossSection(name=name), 2, torch.device("cpu"))
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 8))
    target[:, :4] = 255
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad is not None
    # Ignored pixels get no gradient.
    assert torch.count_nonzero(logits.grad[:, :, :4]) == 0
    changed = target.clone()
    changed[:, :4] = 255
    assert torch.isclose(loss(logits, changed), value)
    assert torch.isfinite(loss(logits, torch.full_like(target, 255)))


def test_combined_losses_are_their_sums() -> None:
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))

    def value(name: str, **kw: float) -> torch.Tensor:
        return build_loss(LossSection(name=name, **kw), 3, torch.device("cpu"))(logits, target)  # type: ignore[arg-type]

    assert torch.isclose(value("focal_dice"), value("focal") + value("dice"))
    assert torch.isclose(value("ce_dice", dice_weight=0.5), value("ce") + 0.5 * value("dice"))
    assert not torch.isclose(value("focal_dice", focal_gamma=0.0), value("focal_dice"))
