"""The backbone contract, checked for every name in the registry (see exprflow.backbones.base)."""

from __future__ import annotations

import pytest
import torch

from exprflow.backbones import BACKBONES

DIM = 12
N_COND = 3
BATCH = 6


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name, make_backbone):
    model = make_backbone(name, DIM, N_COND)
    assert model.dim == DIM and model.n_conditions == N_COND
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, DIM, generator=gen)
    t = torch.rand(BATCH, generator=gen)
    cond = torch.tensor([0, 1, 2, 0, 1, 2])

    # Shape and finite gradients for every parameter.
    model.train()
    out = model(x, t, cond)
    assert out.shape == x.shape
    out.pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has non-finite gradient"

    model.eval()
    with torch.no_grad():
        ref = model(x, t, cond)
        # Time conditioning changes the output.
        assert not torch.allclose(model(x, (t + 0.3) % 1.0, cond), ref, atol=1e-6)
        # Condition changes the output.
        assert not torch.allclose(model(x, t, (cond + 1) % N_COND), ref, atol=1e-6)
        # cond=None is the null condition.
        null = model(x, t, None)
        assert null.shape == x.shape and torch.isfinite(null).all()
        torch.testing.assert_close(null, model(x, t, torch.full((BATCH,), N_COND)))
        # Batch independence: each sample's output depends only on its own inputs.
        single = torch.cat([model(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(BATCH)])
        torch.testing.assert_close(single, ref, rtol=1e-4, atol=1e-5)
        perm = torch.randperm(BATCH, generator=gen)
        torch.testing.assert_close(model(x[perm], t[perm], cond[perm]), ref[perm], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_unconditional(name, make_backbone):
    model = make_backbone(name, DIM, 0).eval()
    x = torch.randn(BATCH, DIM)
    with torch.no_grad():
        out = model(x, torch.rand(BATCH), None)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_grad_mode_agrees(name, make_backbone):
    """Outputs with and without autograd agree (backbones may take shortcuts under no_grad)."""
    model = make_backbone(name, DIM, N_COND).eval()
    x = torch.randn(BATCH, DIM)
    t = torch.full((BATCH,), 0.4)
    cond = torch.tensor([0, 0, 1, 1, 3, 3])
    with_grad = model(x, t, cond).detach()
    with torch.no_grad():
        no_grad = model(x, t, cond)
    torch.testing.assert_close(no_grad, with_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_models_default_options_build_every_backbone(name):
    """``exprflow fit --backbone NAME`` with no options: the models' defaults fit every backbone."""
    from exprflow.models.base import DEFAULT_BACKBONE_KWARGS

    with torch.device("meta"):
        model = BACKBONES.get(name)(dim=2000, n_conditions=3, **DEFAULT_BACKBONE_KWARGS.get(name, {}))
    assert model.dim == 2000
