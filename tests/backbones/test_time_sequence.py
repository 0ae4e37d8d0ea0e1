"""The time-axis velocity network: shapes, flow-time and context conditioning, causality, batch independence."""

from __future__ import annotations

import pytest
import torch

from exprflow.backbones.time_sequence import TIME_MIXERS, TimeSequenceBackbone, block_mixers
from exprflow.errors import ExprflowInputError

B, T, D = 3, 12, 5


def make(name, causal=False):
    torch.manual_seed(0)
    model = TimeSequenceBackbone(D, backbone=name, width=16, depth=2, causal=causal,
                                 mixer_kwargs={"mamba": {"scan": "reference", "head_dim": 16}})
    with torch.no_grad():  # leave the zero (identity) initialisation so that every path is exercised
        for p in model.parameters():
            if (p == 0).all():
                p.normal_(0, 0.1)
    return model.eval()


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    ctx = torch.randn(B, T, D, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.5
    return x, torch.rand(B, generator=g), torch.linspace(0, 1, T), ctx, mask


@pytest.mark.parametrize("name", sorted(TIME_MIXERS))
def test_shape_gradients_and_conditioning(name):
    model = make(name).train()
    x, t, pos, ctx, mask = inputs()
    out = model(x, t, pos, ctx, mask)
    assert out.shape == (B, T, D)
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        ref = model(x, t, pos, ctx, mask)
        assert not torch.allclose(model(x, (t + 0.3) % 1.0, pos, ctx, mask), ref, atol=1e-5)  # flow time
        assert not torch.allclose(model(x, t, pos, ctx, ~mask), ref, atol=1e-5)  # which steps are observed
        assert not torch.allclose(model(x, t, pos, ctx + 1.0, mask), ref, atol=1e-5)  # observed values
        single = torch.cat([model(x[i:i + 1], t[i:i + 1], pos, ctx[i:i + 1], mask[i:i + 1]) for i in range(B)])
        torch.testing.assert_close(single, ref, rtol=1e-4, atol=1e-5)  # batch independence


@pytest.mark.parametrize("name", sorted(TIME_MIXERS))
def test_causal_steps_ignore_the_future_and_bidirectional_ones_do_not(name):
    x, t, pos, ctx, mask = inputs()
    x_future = x.clone()
    x_future[:, 7:] += 3.0
    with torch.no_grad():
        causal = make(name, causal=True)
        torch.testing.assert_close(causal(x_future, t, pos, ctx, mask)[:, :7], causal(x, t, pos, ctx, mask)[:, :7],
                                   rtol=1e-4, atol=1e-5)
        both = make(name, causal=False)
        assert not torch.allclose(both(x_future, t, pos, ctx, mask)[:, :7], both(x, t, pos, ctx, mask)[:, :7],
                                  atol=1e-4)


def test_hybrid_alternates_ssm_and_attention_and_names_are_checked():
    assert block_mixers("hybrid", 4) == ["s4d", "attention", "s4d", "attention"]
    assert block_mixers("transformer", 2) == ["attention", "attention"]
    with pytest.raises(ExprflowInputError, match="time-axis backbone"):
        block_mixers("lstm", 2)


def test_fresh_backbone_outputs_zero_velocity():
    model = TimeSequenceBackbone(D, width=16, depth=2)
    x, t, pos, ctx, mask = inputs()
    assert torch.count_nonzero(model(x, t, pos, ctx, mask)) == 0
