"""The metadata conditioner: an untrained one leaves the plain UNet exactly as it is, absent
fields take the learned "missing" embedding, dropout hides fields only while training, and
both mechanisms (FiLM per decoder block, one vector at the deepest features) learn."""

from __future__ import annotations

import pytest
import torch

from seg.models.conditioning import Conditioner
from seg.models.unet import build_unet

BASE = {"in_channels": 3, "num_classes": 2, "decoder_channels": [32, 16, 16, 8, 8]}


def nets(mechanism: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = build_unet(BASE).eval()
    torch.manual_seed(0)
    cond = build_unet({**BASE, "conditioning": {"widths": [2, 1], "mechanism": mechanism}})
    return plain, cond.eval()


@pytest.mark.parametrize("mechanism", ["film", "deep"])
def test_untrained_conditioner_is_exactly_the_plain_network(mechanism: str) -> None:
    plain, cond = nets(mechanism)
    result = cond.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("conditioner.") for k in result.missing_keys)
    assert not result.unexpected_keys
    x, meta = torch.randn(2, 3, 64, 64), torch.randn(2, 5)
    with torch.no_grad():
        assert torch.equal(plain(x), cond(x, meta))
        assert torch.equal(plain(x), cond(x))  # no metadata at all: every field missing


@pytest.mark.parametrize("mechanism", ["film", "deep"])
def test_metadata_changes_the_output_once_trained(mechanism: str) -> None:
    """A few steps on a target that depends on the metadata only: the loss falls, and two
    metadata vectors then give two different outputs for one image."""
    _, net = nets(mechanism)
    net.train()
    x = torch.randn(1, 3, 64, 64).expand(4, -1, -1, -1)
    meta = torch.tensor([[1.0, 0, 0, 1, 1], [0, 1, 0, 1, 1]]).repeat(2, 1)  # (4, 5)
    target = torch.tensor([1, 0, 1, 0])[:, None, None].expand(4, 64, 64)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(x, meta), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    net.eval()
    with torch.no_grad():
        a, b = net(x[:2], meta[:2]).argmax(1)
    assert (a == 1).float().mean() > 0.9 and (b == 0).float().mean() > 0.9


def test_missing_fields_use_the_learned_embedding_and_dropout_only_trains() -> None:
    c = Conditioner([2, 1], [4], mechanism="deep", hidden=8, dropout=0.5)
    torch.nn.init.normal_(c.head.weight)
    with torch.no_grad():
        c.missing.copy_(torch.tensor([3.0, -3.0, 7.0]))
    c.eval()
    absent = torch.tensor([[9.0, 9.0, 9.0, 0.0, 0.0]])  # codes ignored where present is 0
    same = torch.tensor([[3.0, -3.0, 7.0, 1.0, 1.0]])  # the embedding's own values, present
    assert torch.allclose(c(absent)[0], c(same)[0])
    assert torch.allclose(c(c.blank(1, torch.device("cpu")))[0], c(same)[0])
    # Field by field: only the absent field's codes are swapped for the embedding.
    half = torch.tensor([[3.0, -3.0, 0.5, 1.0, 1.0]])
    part = torch.tensor([[0.0, 0.0, 0.5, 0.0, 1.0]])
    assert torch.allclose(c(half)[0], c(part)[0])
    # Eval: dropout off, deterministic. Training: some windows lose fields.
    x = torch.tensor([[1.0, 2.0, -1.0, 1.0, 1.0]]).repeat(64, 1)
    assert torch.equal(c(x)[0], c(x)[0])
    c.train()
    out = c(x)[0]
    assert len({tuple(r.tolist()) for r in out.round(decimals=4)}) > 1
