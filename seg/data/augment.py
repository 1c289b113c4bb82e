"""The training augmentation pipeline (albumentations 2.0.8), built from the `augment` section.

Images reach the pipeline already normalised to float32 (H, W, C) with any number of bands, so
every transform must work on unbounded float data: geometric transforms (flips, 90° rotations,
scale + crop) come from albumentations and move image and mask together (the mask with nearest
interpolation, so 255 = ignore survives); brightness/contrast, per-band jitter, the illumination
field and noise are our own small transforms because albumentations' versions clip float images
to [0, 1].
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from seg.config import AugmentSection


class NormalisedBrightnessContrast(A.ImageOnlyTransform):
    """x * (1 + c) + b on normalised data, one (b, c) per image, no clipping."""

    def __init__(self, brightness_limit: float, contrast_limit: float, p: float) -> None:
        super().__init__(p=p)
        self.brightness_limit = brightness_limit
        self.contrast_limit = contrast_limit

    def get_params(self) -> dict[str, float]:
        return {
            "beta": self.py_random.uniform(-self.brightness_limit, self.brightness_limit),
            "alpha": 1.0 + self.py_random.uniform(-self.contrast_limit, self.contrast_limit),
        }

    def apply(self, img: np.ndarray, alpha: float = 1.0, beta: float = 0.0, **_: Any) -> np.ndarray:
        return (img * np.float32(alpha) + np.float32(beta)).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_limit", "contrast_limit")


class NormalisedGaussNoise(A.ImageOnlyTransform):
    """Additive Gaussian noise with standard deviation `std` (in units of the band's std)."""

    def __init__(self, std: float, p: float) -> None:
        super().__init__(p=p)
        self.std = std

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        shape = data["image"].shape
        noise = self.random_generator.normal(0.0, self.std, size=shape).astype(np.float32)
        return {"noise": noise}

    def apply(self, img: np.ndarray, noise: np.ndarray | None = None, **_: Any) -> np.ndarray:
        return img if noise is None else (img + noise).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std",)


class NormalisedBandJitter(A.ImageOnlyTransform):
    """x_b * (1 + g_b) + o_b with g_b, o_b uniform in [-limit, limit], drawn per band: the
    differences between two sensors' or two days' colours that per-scene normalisation
    leaves (one band's response against another's), which a shared brightness cannot mimic."""

    def __init__(self, limit: float, p: float) -> None:
        super().__init__(p=p)
        self.limit = limit

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        bands = data["image"].shape[-1]
        draw = self.random_generator.uniform(-self.limit, self.limit, size=(2, bands))
        return {"gain": (1.0 + draw[0]).astype(np.float32), "offset": draw[1].astype(np.float32)}

    def apply(
        self, img: np.ndarray, gain: np.ndarray | None = None, offset: np.ndarray | None = None,
        **_: Any,
    ) -> np.ndarray:  # fmt: skip
        if gain is None or offset is None:
            return img
        return (img * gain + offset).astype(np.float32)  # (H, W, C) * (C,): per band

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("limit",)


def ramp(n: int, knots: int) -> np.ndarray:
    """(n, knots) weights that interpolate `knots` values spread evenly over n pixels linearly."""
    t = np.linspace(0.0, knots - 1.0, n)
    i = np.minimum(t.astype(np.int64), knots - 2)
    weights = np.zeros((n, knots), np.float32)
    weights[np.arange(n), i] = 1.0 - (t - i)
    weights[np.arange(n), i + 1] = t - i
    return weights


class IlluminationField(A.ImageOnlyTransform):
    """A smooth additive field, shared by the bands: a grid x grid lattice of N(0, std) values
    (in units of the band's std) interpolated bilinearly over the window. Brightness that varies
    across the window, so that "brighter than the scene's mean" stops being a class: a network
    trained on one scene otherwise takes every bright surface of a new scene (bare soil, say)
    for the bright class it learned (docs/recipe.md)."""

    def __init__(self, std: float, p: float, grid: int = 3) -> None:
        super().__init__(p=p)
        self.std = std
        self.grid = grid

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = data["image"].shape[:2]
        g = self.grid
        lattice = self.random_generator.normal(0.0, self.std, size=(g, g)).astype(np.float32)
        # ramp(h) @ lattice @ ramp(w).T as broadcast sums, not matmuls, so that no BLAS thread
        # pool starts in a DataLoader worker; ~2.4 ms for a 512 px window on one core (measured).
        rows = (ramp(h, g)[:, :, None] * lattice[None]).sum(axis=1)  # (H, g)
        across = ramp(w, g)  # (W, g)
        field = np.zeros((h, w), np.float32)
        for k in range(g):
            field += rows[:, k, None] * across[None, :, k]  # (H, 1) * (1, W)
        return {"field": field[:, :, None]}  # (H, W, 1): the same for every band

    def apply(self, img: np.ndarray, field: np.ndarray | None = None, **_: Any) -> np.ndarray:
        return img if field is None else (img + field).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std", "grid")


def build_augment(section: AugmentSection, size: int) -> A.Compose | None:
    """The pipeline for `section` on `size` x `size` windows; None when everything is off."""
    steps: list[Any] = []
    if section.scale_crop > 0:
        if section.scale_min > section.scale_max:
            from seg.errors import ConfigError

            raise ConfigError("augment.scale_min must not exceed augment.scale_max")
        steps.append(
            A.RandomResizedCrop(
                size=(size, size),
                scale=(section.scale_min, section.scale_max),
                ratio=(1.0, 1.0),
                p=section.scale_crop,
            )
        )
    if section.crop is not None and section.crop < size:
        if section.crop % 32:
            from seg.errors import ConfigError

            raise ConfigError(
                f"augment.crop {section.crop} is not a multiple of 32 (the UNet downsamples 5"
                f" times); use {max(32, section.crop // 32 * 32)} or {section.crop // 32 * 32 + 32}"
            )
        steps.append(A.RandomCrop(height=section.crop, width=section.crop))
    if section.hflip > 0:
        steps.append(A.HorizontalFlip(p=section.hflip))
    if section.vflip > 0:
        steps.append(A.VerticalFlip(p=section.vflip))
    if section.rot90 > 0:
        steps.append(A.RandomRotate90(p=section.rot90))
    if section.brightness_contrast > 0:
        steps.append(
            NormalisedBrightnessContrast(
                section.brightness_limit, section.contrast_limit, p=section.brightness_contrast
            )
        )
    if section.band_jitter > 0:
        steps.append(NormalisedBandJitter(section.band_jitter_limit, p=section.band_jitter))
    share, std = section.illumination, section.illumination_std
    if share == "auto" or std == "auto":  # seg train resolves them from the store's band count
        raise ValueError("augment.illumination auto must be resolved (resolve_augment) first")
    if share > 0:
        steps.append(IlluminationField(std, p=share, grid=section.illumination_grid))
    if section.noise > 0:
        steps.append(NormalisedGaussNoise(section.noise_std, p=section.noise))
    if not steps:
        return None
    # mask_interpolation 0 = nearest: class ids and 255 are never blended.
    return A.Compose(steps, mask_interpolation=0, seed=0)


def apply_augment(
    pipeline: A.Compose, image: np.ndarray, mask: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Augment image (C, H, W) float32 and mask (H, W) together with a per-sample seed, so the
    result depends only on (seed, window), not on worker count or resume point."""
    pipeline.set_random_seed(seed)
    out = pipeline(image=np.ascontiguousarray(image.transpose(1, 2, 0)), mask=mask)
    img = out["image"]
    if img.ndim == 2:  # a single band can come back as (H, W)
        img = img[:, :, None]
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), out["mask"]
