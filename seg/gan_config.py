"""The `pix2pix` section of a train config: the PatchGAN discriminator(s), the adversarial loss
and its stabilisers (seg.training.pix2pix). Ignored by other models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seg.errors import ConfigError


class Pix2PixSection(BaseModel):
    """`model.name: pix2pix`: the PatchGAN discriminator, the adversarial loss and its
    stabilisers (seg.training.pix2pix). Ignored by other models."""

    # As seg.config.Section (which imports this module): a typo is an error naming the key.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # G loss = segmentation loss + lambda_adv x adversarial loss. "adaptive": lambda is set every
    # step so the adversarial gradient at G's last layer is adv_balance x the segmentation
    # loss's (VQGAN's adaptive weight, clamped to [0, 1e4]); it is logged as lambda_adv.
    lambda_adv: float | Literal["adaptive"] = 0.1
    adv_balance: Annotated[float, Field(gt=0.0)] = 0.1
    gan_loss: Literal["vanilla", "lsgan", "hinge", "wgan-gp"] = "lsgan"
    gp_weight: Annotated[float, Field(ge=0.0)] = 10.0  # wgan-gp only
    # PatchGAN: d_layers stride-2 convs; 3 = 70x70 receptive field, 2 = 34x34, 4 = 142x142.
    d_layers: Annotated[int, Field(ge=1, le=6)] = 3
    d_channels: Annotated[int, Field(ge=8)] = 64
    d_norm: Literal["none", "instance", "batch"] = "none"
    spectral_norm: bool = True
    # PatchGANs on the pair at full, 1/2 and 1/4 resolution (pix2pixHD), their losses averaged:
    # 1 = one scale (pix2pix); a coarser D judges larger structures with the same layers.
    d_scales: Annotated[int, Field(ge=1, le=3)] = 1
    # pix2pixHD's feature matching: G also pays this x the L1 distance between D's features
    # (every block, every scale) on the real pair and on its own (0 = off).
    feature_matching: Annotated[float, Field(ge=0.0)] = 0.0
    # TTUR: D's own Adam LR and beta1 (G uses the optim section).
    lr_d: Annotated[float, Field(gt=0.0)] = 2.0e-4
    beta1_d: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    # Update ratio per batch: k D updates then one G update, or one D update then k G updates.
    d_steps: Annotated[int, Field(ge=1, le=10)] = 1
    g_steps: Annotated[int, Field(ge=1, le=10)] = 1
    # One-sided label smoothing (1.0 = off); soft labels: real in [real - w, real], fake in
    # [0, w] (both for vanilla/lsgan; hinge and wgan-gp use only the hard roles), drawn
    # uniformly or from a normal centred in the interval (std w / 4, clipped to it).
    real_label: Annotated[float, Field(gt=0.5, le=1.0)] = 0.9
    soft_label_width: Annotated[float, Field(ge=0.0, le=0.3)] = 0.0
    soft_label_dist: Literal["uniform", "normal"] = "uniform"
    # Std of Gaussian noise on D's inputs, annealed linearly to 0 over instance_noise_steps
    # (None = the first half of training).
    instance_noise: Annotated[float, Field(ge=0.0)] = 0.1
    instance_noise_steps: Annotated[int | None, Field(ge=1)] = None
    # Probability that a sample's real/fake labels are swapped in a D update.
    flip_prob: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0
    # "Null pictures": the probability that a fake pair is a real image with a wrong true mask
    # (another window's, or its own shifted by half a window), so D must judge whether the mask
    # fits the image, not only whether it looks like a mask.
    mismatch_prob: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # Warn when D's loss (above its floor) stays below this, or G predicts one class, for
    # collapse_patience steps.
    d_collapse_loss: Annotated[float, Field(ge=0.0)] = 0.02
    collapse_patience: Annotated[int, Field(ge=1)] = 50

    @field_validator("lambda_adv", mode="before")
    @classmethod
    def _number_or_adaptive(cls, value: Any) -> Any:
        # One plain message instead of one per member of the union.
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value == "adaptive" or (number and value >= 0):
            return value
        raise ValueError(f"must be a number >= 0 or 'adaptive', not {value!r}")

    @model_validator(mode="after")
    def _consistent(self) -> Pix2PixSection:
        if self.d_steps > 1 and self.g_steps > 1:
            raise ValueError("set d_steps or g_steps above 1, not both (it is a ratio)")
        if self.gan_loss == "wgan-gp" and self.d_norm == "batch":
            raise ValueError(
                "wgan-gp needs d_norm none or instance (batch norm breaks its penalty)"
            )
        return self

    def check_fits(self, sizes: dict[str, int]) -> None:
        """Refuse windows (or training crops) too small for the coarsest discriminator: its
        d_layers stride-2 convs halve the side and its last two 4x4 convs take a pixel each, so
        a side n leaves n / 2^d_layers - 2 patches, at 1 / 2^(d_scales - 1) of the window."""
        need = 3 * 2**self.d_layers * 2 ** (self.d_scales - 1)
        for what, side in sizes.items():
            if side < need:
                raise ConfigError(
                    f"pix2pix.d_scales {self.d_scales} with d_layers {self.d_layers} needs"
                    f" windows of at least {need} px, but the {what} is {side} px; lower"
                    " pix2pix.d_scales or pix2pix.d_layers"
                )
