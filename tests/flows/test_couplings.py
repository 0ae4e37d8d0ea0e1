"""Minibatch OT coupling: recovers permutations, lowers cost, respects classes."""

from __future__ import annotations

import torch

from exprflow.flows import COUPLINGS


def _cost(x0, x1):
    return (x0 - x1).pow(2).sum(dim=1).sum().item()


def test_independent_is_identity():
    x0, x1 = torch.randn(2, 8, 3)
    assert COUPLINGS.get("independent")().pair(x0, x1) is x0


def test_ot_recovers_permutation():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 5, generator=gen)
    perm = torch.randperm(64, generator=gen)
    x1 = x0[perm] + 1e-3 * torch.randn(64, 5, generator=gen)
    paired = COUPLINGS.get("ot")().pair(x0, x1)
    torch.testing.assert_close(paired, x0[perm])


def test_ot_cost_not_above_independent_and_is_a_permutation():
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(100, 4, generator=gen)
    x1 = torch.randn(100, 4, generator=gen) * 2 + 1
    paired = COUPLINGS.get("ot")().pair(x0, x1)
    assert _cost(paired, x1) <= _cost(x0, x1)
    # Each noise row is used exactly once.
    assert torch.equal(torch.sort(paired, dim=0).values, torch.sort(x0, dim=0).values)


def test_class_conditional_ot_stays_within_classes():
    gen = torch.Generator().manual_seed(2)
    n = 90
    cond = torch.randint(0, 3, (n,), generator=gen)
    # Tag each noise row with its own class in an extra coordinate; OT must never mix classes
    # even though a cross-class pairing would be cheaper (data of class k sits far from noise of class k).
    x0 = torch.randn(n, 3, generator=gen)
    x0[:, 0] = cond.float()
    x1 = torch.randn(n, 3, generator=gen)
    x1[:, 0] = 2.0 - cond.float()
    paired = COUPLINGS.get("ot")().pair(x0, x1, cond)
    torch.testing.assert_close(paired[:, 0], cond.float())
    for k in range(3):
        mask = cond == k
        assert torch.equal(torch.sort(paired[mask], dim=0).values, torch.sort(x0[mask], dim=0).values)


def test_ot_handles_trailing_dims_and_single_sample():
    x0, x1 = torch.randn(2, 6, 2, 3)
    assert COUPLINGS.get("ot")().pair(x0, x1).shape == x0.shape
    one = torch.randn(1, 4)
    torch.testing.assert_close(COUPLINGS.get("ot")().pair(one, one + 1), one)
