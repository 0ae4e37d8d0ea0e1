"""Packed codes of several condition attributes, per-attribute dropout and compositional guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exprflow.backbones import BACKBONES
from exprflow.errors import ExprflowInputError
from exprflow.flows import RectifiedFlow, guided_velocity
from exprflow.flows.conditions import ConditionSpace, compositional_velocity, install_condition_embedding

SPACE = ConditionSpace(("cell_type", "donor"), (("B", "NK", "T"), ("d1", "d2")))


def test_pack_unpack_roundtrip_and_null_code():
    digits = np.array([[0, 0], [2, 1], [3, 2], [1, 2], [3, 0]])  # 3 = null type, 2 = null donor
    codes = SPACE.pack(digits)
    assert np.array_equal(SPACE.unpack(codes), digits)
    assert len(set(codes.tolist())) == len(codes)
    assert SPACE.pack(np.array([[3, 2]]))[0] == SPACE.null_code == 4 * 3 - 1


def test_dropout_is_independent_per_attribute():
    cond = torch.as_tensor(SPACE.pack(np.array([[1, 0]] * 20000)))
    dropped = SPACE.unpack(SPACE.drop(cond, 0.3, torch.Generator().manual_seed(0)).numpy())
    type_null, donor_null = dropped[:, 0] == 3, dropped[:, 1] == 2
    assert abs(type_null.mean() - 0.3) < 0.02 and abs(donor_null.mean() - 0.3) < 0.02
    assert abs((type_null & donor_null).mean() - 0.09) < 0.01  # independent: 0.3 * 0.3
    assert set(dropped[~type_null, 0]) == {1} and set(dropped[~donor_null, 1]) == {0}


def test_objective_drops_attributes_not_whole_codes():
    seen = []

    class Spy(torch.nn.Module):
        n_conditions = SPACE.null_code

        def forward(self, x, t, cond):
            seen.append(cond.clone())
            return x

    cond = torch.as_tensor(SPACE.pack(np.array([[1, 0]] * 4000)))
    RectifiedFlow(cond_dropout=0.5, conditions=SPACE).loss(Spy(), torch.zeros(4000, 2), cond,
                                                           generator=torch.Generator().manual_seed(1))
    digits = SPACE.unpack(seen[0].numpy())
    only_type = (digits[:, 0] == 1) & (digits[:, 1] == 2)
    assert 0.2 < only_type.mean() < 0.3  # one attribute kept, the other dropped: 0.5 * 0.5


def _backbone():
    torch.manual_seed(0)
    net = BACKBONES.get("mlp")(dim=4, n_conditions=0, hidden=16, depth=1)
    install_condition_embedding(net, SPACE)
    for table in net.cond_embed.tables:  # non-zero outputs: adaLN-Zero starts at zero
        torch.nn.init.normal_(table.weight)
    for p in net.parameters():
        if p.dim() > 1 and p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def test_embedding_sums_attributes():
    net = _backbone()
    emb = net.cond_embed
    codes = torch.as_tensor(SPACE.pack(np.array([[2, 1], [2, 2], [3, 1], [3, 2]])))
    e = emb(codes)
    assert torch.allclose(e[0] - e[1], e[2] - e[3], atol=1e-6)  # donor's contribution is the same for any type
    assert net.n_conditions == SPACE.null_code


@torch.no_grad()
def test_compositional_guidance_reduces_to_known_cases():
    net = _backbone()
    x, t = torch.randn(5, 4), torch.full((5,), 0.3)
    full = torch.as_tensor(SPACE.pack(np.array([[1, 0]] * 5)))
    plain = net(x, t, full)
    assert torch.allclose(compositional_velocity(net, SPACE, full, {}, "joint")(x, t), plain, atol=1e-5)
    cfg = guided_velocity(net, full, 2.5)(x, t)
    equal = compositional_velocity(net, SPACE, full, {"cell_type": 2.5, "donor": 2.5}, "joint")(x, t)
    assert torch.allclose(cfg, equal, atol=1e-5)
    null = net(x, t, torch.full((5,), SPACE.null_code))
    v_type = net(x, t, torch.as_tensor(SPACE.pack(np.array([[1, 2]] * 5))))
    v_donor = net(x, t, torch.as_tensor(SPACE.pack(np.array([[3, 0]] * 5))))
    product = compositional_velocity(net, SPACE, full, {"cell_type": 2.0, "donor": 0.5}, "product")(x, t)
    assert torch.allclose(product, null + 2.0 * (v_type - null) + 0.5 * (v_donor - null), atol=1e-5)
    assert not torch.allclose(product, plain, atol=1e-3)


def test_unknown_attribute_and_composition_are_refused():
    net = _backbone()
    full = torch.as_tensor(SPACE.pack(np.array([[1, 0]])))
    with pytest.raises(ExprflowInputError, match="donor"):
        compositional_velocity(net, SPACE, full, {"batch": 2.0})
    with pytest.raises(ExprflowInputError, match="composition"):
        compositional_velocity(net, SPACE, full, {}, "sum")


@pytest.mark.parametrize("name", sorted(BACKBONES.names()))
def test_every_backbone_with_a_condition_table_takes_packed_codes(name):
    from backbone_helpers import build_backbone, perturb_parameters

    net = build_backbone(name, dim=16)
    if not hasattr(getattr(net, "cond_embed", None), "table"):
        with pytest.raises(ExprflowInputError, match="one condition_key"):
            install_condition_embedding(net, SPACE)
        return
    net = perturb_parameters(install_condition_embedding(net, SPACE)).eval()
    x, t = torch.randn(4, 16), torch.full((4,), 0.5)
    a = torch.as_tensor(SPACE.pack(np.array([[0, 0]] * 4)))
    b = torch.as_tensor(SPACE.pack(np.array([[0, 1]] * 4)))
    with torch.no_grad():
        va, vb, vnull = net(x, t, a), net(x, t, b), net(x, t, None)
    assert va.shape == x.shape and not torch.allclose(va, vb) and not torch.allclose(va, vnull)
