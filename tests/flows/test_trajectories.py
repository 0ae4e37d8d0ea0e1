"""OT chaining of snapshots into trajectories, displacement interpolation and the sequence objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exprflow.backbones.time_sequence import TimeSequenceBackbone
from exprflow.errors import ExprflowInputError
from exprflow.flows.sequence_objective import SequenceRectifiedFlow, sample_observed, sample_trajectories
from exprflow.flows.trajectories import chain_sequences, displacement_interpolation, ot_plan


def shifted_clouds(n=40, d=3, T=4, seed=0):
    """T point clouds; cloud k is cloud 0 shifted by k * delta (small) and shuffled by perm_k."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d)) * 3.0
    delta = np.array([0.05, -0.02, 0.03])[:d]
    perms = [np.arange(n)] + [rng.permutation(n) for _ in range(T - 1)]
    # groups[k][perm_k[i]] = base[i] + k * delta
    groups = []
    for k, perm in enumerate(perms):
        g = np.empty_like(base)
        g[perm] = base + k * delta
        groups.append(g)
    return groups, perms


def test_exact_ot_recovers_a_known_pairing():
    groups, perms = shifted_clouds()
    plan = ot_plan(groups[0], groups[1])
    np.testing.assert_allclose(plan.sum(), 1.0)
    np.testing.assert_array_equal(plan.argmax(1)[perms[0]], perms[1])


@pytest.mark.parametrize("method", ["exact", "minibatch"])
def test_chained_sequences_follow_the_shift_one_cell_per_time(method):
    groups, perms = shifted_clouds(n=32)
    idx = chain_sequences(groups, 64, method=method, seed=1, batch_size=32)
    assert idx.shape == (64, 4) and idx.dtype == np.int64
    for k in range(4):
        assert (idx[:, k] >= 0).all() and (idx[:, k] < 32).all()
    # every step of every sequence moves by exactly delta: the chain follows one underlying point
    steps = np.stack([groups[k + 1][idx[:, k + 1]] - groups[k][idx[:, k]] for k in range(3)], axis=1)
    if method == "exact":
        np.testing.assert_allclose(steps, np.broadcast_to([0.05, -0.02, 0.03], steps.shape), atol=1e-9)
    else:  # minibatches are drawn with replacement, so a partner may be missing: far shorter steps than chance
        rng = np.random.default_rng(0)
        chance = groups[1][rng.integers(0, 32, 500)] - groups[0][rng.integers(0, 32, 500)]
        assert (steps ** 2).sum(-1).mean() < 0.5 * (chance ** 2).sum(-1).mean()
        assert np.mean(np.abs(steps - [0.05, -0.02, 0.03]).max(-1) < 1e-9) > 0.25


def test_chain_validates_inputs():
    groups, _ = shifted_clouds(n=5)
    with pytest.raises(ExprflowInputError, match="method"):
        chain_sequences(groups, 4, method="sinkhorn")
    with pytest.raises(ExprflowInputError, match="at least two"):
        chain_sequences(groups[:1], 4)
    with pytest.raises(ExprflowInputError, match="no cells"):
        chain_sequences([groups[0], groups[1][:0]], 4)


def test_weights_steer_the_start_of_the_chain():
    groups, _ = shifted_clouds(n=6)
    w = np.zeros(6)
    w[2] = 1.0
    idx = chain_sequences(groups[:2], 20, method="exact", weights=[w, None])
    assert (idx[:, 0] == 2).all()


def test_displacement_interpolation_lies_halfway_along_the_plan():
    groups, perms = shifted_clouds(n=20)
    mid = displacement_interpolation(groups[0], groups[2], 0.5, 200, seed=0)
    expected = groups[0] + np.array([0.05, -0.02, 0.03])  # halfway between shifts 0 and 2 delta
    d = ((mid[:, None, :] - expected[None]) ** 2).sum(-1).min(1)
    assert d.max() < 1e-12
    with pytest.raises(ExprflowInputError, match="fraction"):
        displacement_interpolation(groups[0], groups[1], 1.5, 3)


def test_observed_masks_stay_within_present_and_leave_a_query():
    present = torch.tensor([True, False, True, True])
    obs = sample_observed(present, 500, cond_dropout=0.2, generator=torch.Generator().manual_seed(0))
    assert not obs[:, 1].any()
    assert ((present & ~obs).any(dim=1)).all()
    assert 0.1 < (~obs.any(dim=1)).float().mean() < 0.6  # unconditional rows and rows with rate ~ 0


def test_p_uncond_is_a_deprecated_alias_of_cond_dropout():
    from exprflow.flows.sequence_objective import SequenceRectifiedFlow

    present = torch.tensor([True, True, True])
    new = sample_observed(present, 200, cond_dropout=0.5, generator=torch.Generator().manual_seed(1))
    with pytest.warns(DeprecationWarning, match="p_uncond= is deprecated; use cond_dropout="):
        old = sample_observed(present, 200, p_uncond=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(new, old)
    with pytest.warns(DeprecationWarning):
        assert SequenceRectifiedFlow(torch.linspace(0, 1, 3), present, p_uncond=0.3).cond_dropout == 0.3
    with pytest.raises(ExprflowInputError, match="not both"):
        sample_observed(present, 2, cond_dropout=0.1, p_uncond=0.5)


def test_sequence_loss_ignores_absent_steps_and_observed_steps_are_reproduced():
    torch.manual_seed(0)
    model = TimeSequenceBackbone(3, backbone="s4d", width=16, depth=2)
    positions = torch.tensor([0.0, 0.3, 0.6, 1.0])
    present = torch.tensor([True, True, False, True])
    objective = SequenceRectifiedFlow(positions, present)
    x1 = torch.randn(8, 4, 3)
    gen = torch.Generator().manual_seed(3)
    loss = objective.loss(model, x1, generator=gen)
    x1_changed = x1.clone()
    x1_changed[:, 2] = 100.0  # an absent grid step carries no loss
    loss_changed = objective.loss(model, x1_changed, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(loss) and torch.allclose(loss, loss_changed)

    context = torch.randn(5, 4, 3)
    observed = torch.tensor([[True, False, False, True]] * 5)
    with torch.no_grad():  # make the velocity non-zero everywhere
        model.head.bias.fill_(0.5)
    out, nfe = sample_trajectories(model, torch.randn(5, 4, 3), positions, context, observed, n_steps=4)
    assert nfe == 4
    torch.testing.assert_close(out[:, [0, 3]], context[:, [0, 3]], rtol=0, atol=0)
    assert not torch.allclose(out[:, 1], context[:, 1])
