"""Classifier-free guidance: scale 1 / 0 limits, batching equals separate calls, pass counts."""

from __future__ import annotations

import torch
from torch import nn

from exprflow.flows import guided_velocity


class Toy(nn.Module):
    """v(x, t, c) = x * (c + 1) + t; counts forward passes and their batch sizes."""

    n_conditions = 3

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, cond):
        self.calls.append(x.shape[0])
        return x * (cond.to(x.dtype)[:, None] + 1.0) + t[:, None]


def test_scale_one_is_conditional_and_scale_zero_is_unconditional():
    model = Toy()
    x = torch.randn(5, 2)
    cond = torch.tensor([0, 1, 2, 0, 1])
    t = torch.full((5,), 0.3)
    torch.testing.assert_close(guided_velocity(model, cond, 1.0)(x, 0.3), model(x, t, cond))
    torch.testing.assert_close(guided_velocity(model, cond, 0.0)(x, t), model(x, t, torch.full((5,), 3)))
    torch.testing.assert_close(guided_velocity(model, None, 2.0)(x, t), model(x, t, torch.full((5,), 3)))
    model.calls.clear()
    guided_velocity(model, cond, 1.0)(x, t)
    guided_velocity(model, cond, 0.0)(x, t)
    assert model.calls == [5, 5]  # one pass each


def test_batched_guidance_equals_two_separate_calls():
    model = Toy()
    x = torch.randn(4, 2)
    cond = torch.tensor([2, 1, 0, 2])
    t = torch.rand(4)
    model.calls.clear()
    v = guided_velocity(model, cond, 2.5)(x, t)
    assert model.calls == [8]  # one batched pass of size 2B
    v_cond = model(x, t, cond)
    v_null = model(x, t, torch.full((4,), 3))
    torch.testing.assert_close(v, v_null + 2.5 * (v_cond - v_null))


def test_guidance_with_mlp_backbone():
    from exprflow.backbones import MLPBackbone

    torch.manual_seed(0)
    model = MLPBackbone(dim=3, n_conditions=2, hidden=16, depth=1, time_dim=8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(6, 3)
        cond = torch.tensor([0, 1, 0, 1, 0, 1])
        v = guided_velocity(model, cond, 3.0)(x, 0.7)
        t = torch.full((6,), 0.7)
        v_cond, v_null = model(x, t, cond), model(x, t, None)
    torch.testing.assert_close(v, v_null + 3.0 * (v_cond - v_null), rtol=1e-4, atol=1e-5)
