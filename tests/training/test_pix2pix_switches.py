"""pix2pix's newer switches: PatchGANs at several scales (pix2pixHD), normal soft labels, and
mismatched pairs shown to D as fake ("null pictures")."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from test_pix2pix import batch, make_step, p2p_args, params
from train_helpers import seg_inprocess

from seg.config import TrainConfig, validate_dict
from seg.models.pix2pix import (
    MultiScaleDiscriminator,
    build_discriminator,
    feature_distance,
    judgements,
    scale_features,
)
from seg.training.gan_inputs import mismatched, soft_targets

SWITCHES = {
    "d_scales": 2,
    "mismatch_prob": 0.5,
    "soft_label_dist": "normal",
    "soft_label_width": 0.2,
}


def section(**settings: Any) -> Any:
    cfg = validate_dict(TrainConfig, {"model": {"name": "pix2pix"}, "pix2pix": settings}, "t")
    return cfg.pix2pix


def test_each_scale_judges_the_pair_pooled_by_two() -> None:
    torch.manual_seed(0)
    disc = build_discriminator(3, 2, scales=3, spectral_norm=False)
    assert isinstance(disc, MultiScaleDiscriminator)
    image, mask = torch.randn(2, 3, 128, 96), torch.rand(2, 2, 128, 96)
    outs = judgements(disc(image, mask))
    # n / 8 - 2 patches per side at 128, 64 and 32 rows (96, 48, 24 columns)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 14, 10), (2, 1, 6, 4), (2, 1, 2, 1)]
    # The second PatchGAN sees the pair averaged 2x2: the same as feeding it pooled inputs.
    pooled = disc.scales[1](*(torch.nn.functional.avg_pool2d(x, 2) for x in (image, mask)))
    assert torch.allclose(outs[1], pooled)
    single = build_discriminator(3, 2)  # one scale keeps the plain PatchGAN (and its checkpoints)
    assert not isinstance(single, MultiScaleDiscriminator)
    assert len(judgements(single(image, mask))) == 1


def test_normal_soft_labels_stay_in_their_interval_and_gather_mid_way() -> None:
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    real, fake = soft_targets(section(soft_label_width=0.2, soft_label_dist="normal"), 4000, cpu)
    assert float(real.min()) >= 0.7 - 1e-6 and float(real.max()) <= 0.9 + 1e-6
    assert float(fake.min()) >= 0.0 and float(fake.max()) <= 0.2 + 1e-6
    assert float(fake.mean()) == pytest.approx(0.1, abs=0.005)
    _, uniform = soft_targets(section(soft_label_width=0.2), 4000, cpu)

    def middle(x: torch.Tensor) -> float:  # share in the middle half of [0, 0.2]
        return float(((x >= 0.05) & (x <= 0.15)).float().mean())

    # Same interval and centre, more weight in the middle: ~68 % (+-1 std) against 50 %.
    assert middle(fake) > 0.62 and middle(uniform) < 0.55


def test_mismatched_pairs_are_true_masks_of_another_image() -> None:
    torch.manual_seed(0)
    real = torch.zeros(2, 2, 8, 8)
    real[0, 1], real[1, 0] = 1.0, 1.0  # window 0 all class 1, window 1 all class 0
    fake = torch.full((2, 2, 8, 8), 0.5)
    valid = torch.ones(2, 1, 8, 8)
    valid[:, :, :2] = 0  # no-data rows stay zero in what D sees
    always = section(mismatch_prob=0.999999)
    out = mismatched(always, real, fake, valid)
    assert torch.equal(out, real.roll(1, dims=0) * valid)
    one = torch.zeros(1, 2, 8, 8)
    one[0, 1, :, :4] = 1.0  # a left half of class 1: rolled, the class sits on the right
    rolled = mismatched(always, one, fake[:1], torch.ones(1, 1, 8, 8))
    assert torch.equal(rolled[0, 1, :, 4:], torch.ones(8, 4))
    assert torch.equal(mismatched(section(), real, fake, valid), fake)  # off by default


def test_the_switches_train_both_networks_and_resume_identically() -> None:
    torch.set_num_threads(1)
    step = make_step(SWITCHES)
    g0, d0 = params(step.generator), params(step.discriminator)
    image, mask = batch()
    stats = {}
    for _ in range(2):
        stats = step.train_step(image, mask)
        step.step_schedulers()
    for key in ("loss", "g_adv", "d_loss", "d_acc", "d_excess"):
        assert stats[key] == stats[key], key  # present and not NaN
    assert any(not torch.equal(a, b) for a, b in zip(g0, params(step.generator), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, params(step.discriminator), strict=True))

    first = make_step(SWITCHES)
    first.train_step(image, mask)
    buf = io.BytesIO()
    torch.save({**first.state_dict(), "rng": torch.get_rng_state()}, buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    again = make_step(SWITCHES)
    again.load_state_dict(state)
    torch.set_rng_state(state["rng"])  # (make_step seeds the global RNG)
    first.train_step(image, mask)  # draws labels, noise and mismatches from the global RNG ...
    torch.set_rng_state(state["rng"])
    again.train_step(image, mask)  # ... which the checkpoint carries: the same draws again
    a, b = first.discriminator.state_dict(), again.discriminator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_too_many_scales_for_the_window_fail_the_cli_in_one_line(
    make_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    store = make_store()  # 64 px windows: 3 scales of a 3-layer PatchGAN need 96
    out = tmp_path / "run"
    code, err = seg_inprocess(monkeypatch, capsys, *p2p_args(store, out, "pix2pix.d_scales=3"))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "pix2pix.d_scales 3" in lines[0] and "at least 96 px" in lines[0], err
    assert not out.exists()


def test_adaptive_lambda_balances_the_gradients_at_the_last_layer() -> None:
    torch.set_num_threads(1)
    step = make_step({"lambda_adv": "adaptive", "adv_balance": 0.5})
    image, mask = batch(size=32)
    seg_loss = step.loss_fn(step.net(image), mask)
    # An "adversarial" loss whose gradient is 4x the segmentation one: lambda = 0.5 / 4.
    assert step._adaptive_lambda(seg_loss, 4 * seg_loss) == pytest.approx(0.125, rel=1e-3)
    lambdas = []
    for _ in range(3):
        stats = step.train_step(image, mask)
        step.step_schedulers()
        lambdas.append(stats["lambda_adv"])
    assert all(0 < v < 1e4 for v in lambdas) and len(set(lambdas)) > 1  # set anew each step
    constant = make_step({"lambda_adv": 0.3}).train_step(image, mask)
    assert constant["lambda_adv"] == 0.3


def test_feature_matching_compares_every_block_of_every_scale() -> None:
    torch.manual_seed(0)
    disc = build_discriminator(3, 2, scales=2, layers=2, spectral_norm=False)
    image, real = torch.randn(2, 3, 64, 64), torch.rand(2, 2, 64, 64)
    feats = scale_features(disc, image, real)
    # per scale: the first conv's block, `layers` more blocks, then the logits of forward
    assert [len(f) for f in feats] == [4, 4]
    for got, want in zip(feats, judgements(disc(image, real)), strict=True):
        assert torch.equal(got[-1], want)
    assert float(feature_distance(feats, feats)) == 0.0
    fake = real.flip(0).requires_grad_(True)
    distance = feature_distance(feats, scale_features(disc, image, fake))
    distance.backward()
    assert float(distance) > 0 and fake.grad is not None and float(fake.grad.abs().sum()) > 0

    step = make_step({"feature_matching": 2.0})
    stats = step.train_step(*batch())
    assert stats["g_fm"] > 0  # G pays for it: loss = seg + lambda x adv + 2 x fm
    total = stats["seg_loss"] + stats["lambda_adv"] * stats["g_adv"] + 2.0 * stats["g_fm"]
    assert stats["loss"] == pytest.approx(total, rel=1e-4)
    assert make_step({}).train_step(*batch())["g_fm"] == 0.0  # off by default


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"feature_matching": -1}, "'pix2pix.feature_matching'"),
        ({"lambda_adv": "adaptve"}, "'pix2pix.lambda_adv': Value error, must be a number >= 0"),
        ({"lambda_adv": -1}, "'pix2pix.lambda_adv': Value error, must be a number >= 0"),
        ({"d_scales": 4}, "'pix2pix.d_scales'"),
        ({"soft_label_dist": "gauss"}, "'pix2pix.soft_label_dist'"),
        ({"mismatch_prob": 1.5}, "'pix2pix.mismatch_prob'"),
    ],
)
def test_bad_switches_name_their_key(settings: dict[str, Any], words: str) -> None:
    from seg.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        section(**settings)
    assert words in str(err.value) and "\n" not in str(err.value)
