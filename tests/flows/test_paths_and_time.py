"""Rectified path endpoints and velocity; time-sampler ranges and moments."""

from __future__ import annotations

import math

import pytest
import torch

from exprflow.flows import TIME_SAMPLERS, LogitNormalTimeSampler, RectifiedPath


def test_path_endpoints_and_constant_velocity():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(2, 5, 3, 4, generator=gen)
    path = RectifiedPath()
    xt, ut = path.sample(x0, x1, torch.zeros(5))
    torch.testing.assert_close(xt, x0)
    xt, ut1 = path.sample(x0, x1, torch.ones(5))
    torch.testing.assert_close(xt, x1)
    torch.testing.assert_close(ut, x1 - x0)
    torch.testing.assert_close(ut1, ut)


def test_path_interpolates_per_sample_time():
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    xt, _ = RectifiedPath().sample(x0, x1, torch.tensor([0.0, 0.25, 0.9]))
    torch.testing.assert_close(xt, torch.tensor([[0.0, 0.0], [0.25, 0.25], [0.9, 0.9]]))


def test_path_rejects_bad_time_shape():
    with pytest.raises(ValueError):
        RectifiedPath().sample(torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(2))


def test_uniform_time_sampler():
    t = TIME_SAMPLERS.get("uniform")().sample(200_000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (200_000,) and t.min() >= 0.0 and t.max() < 1.0
    assert abs(t.mean().item() - 0.5) < 5e-3
    assert abs(t.var().item() - 1.0 / 12.0) < 2e-3


def test_logit_normal_time_sampler():
    t = TIME_SAMPLERS.get("logit_normal")().sample(200_000, generator=torch.Generator().manual_seed(0))
    assert t.min() > 0.0 and t.max() < 1.0
    assert abs(t.median().item() - 0.5) < 5e-3
    logit = torch.log(t) - torch.log1p(-t)
    assert abs(logit.mean().item()) < 1e-2 and abs(logit.std().item() - 1.0) < 1e-2
    shifted = LogitNormalTimeSampler(mean=1.0, std=0.5).sample(100_000, torch.Generator().manual_seed(1))
    assert abs(shifted.median().item() - 1.0 / (1.0 + math.exp(-1.0))) < 5e-3
