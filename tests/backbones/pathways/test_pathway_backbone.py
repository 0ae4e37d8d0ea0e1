"""The pathway backbone: pooled tokens, no positions (set order does not matter), gene-order
equivariance, the "no set" token, panels that drop genes, and loading before set-up."""

import numpy as np
import pytest
import torch
from backbone_helpers import perturb_parameters

from exprflow.backbones import BACKBONES
from exprflow.backbones.pathways import PathwayBackbone
from exprflow.errors import ExprflowInputError

DIM = 14
SETS = {"A": ["G0", "G1", "G2"], "B": ["G2", "G3", "G4", "G5"], "C": ["G5", "G6", "G7", "G0"], "D": ["G8", "G9"]}
SMALL = {"min_set_size": 2, "min_coverage": 0.0, "hidden": 16, "depth": 2, "heads": 2, "time_dim": 16}


def build(sets=SETS, seed=0, **kw):
    torch.manual_seed(seed)
    model = PathwayBackbone(DIM, n_conditions=2, gene_sets=sets, **{**SMALL, **kw})
    model.setup_genes(PathwayBackbone.toy_gene_context(DIM))
    return perturb_parameters(model).eval()


def inputs(batch=5):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, DIM, generator=gen), torch.rand(batch, generator=gen), torch.tensor([0, 1, 0, 2, 1])


def test_registered_and_membership_in_buffers():
    model = build()
    assert isinstance(BACKBONES.get("pathway")(dim=DIM), PathwayBackbone)
    assert int(model.n_sets) == 4 and model.gene_set_names == ["A", "B", "C", "D"]
    assert model.coverage_report.n_covered == 10
    assert {"set_index", "gene_index", "n_sets"} <= set(model.state_dict())


def test_pooling_and_decoding_maps_are_the_normalised_membership():
    pool, decode, has_no_set = build().pool_maps(torch.arange(DIM))
    member = np.zeros((5, DIM))
    for s, genes in enumerate(SETS.values()):
        member[s, [int(g[1:]) for g in genes]] = 1
    member[4, [10, 11, 12, 13]] = 1  # the "no set" token
    assert has_no_set
    np.testing.assert_allclose(pool.to_dense().numpy(), member / member.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(decode.to_dense().numpy(), member.T / member.sum(0)[:, None], rtol=1e-6)


def test_tokens_pool_their_members():
    model = build()
    x, t, cond = inputs()
    with torch.no_grad():
        ids, u, _ = model._prepare(x, t, cond, None)
        h = model.phi(model.tokens(u, ids))  # (B, G, d)
        pool, _, _ = model.pool_maps(ids)
        from exprflow.backbones.pathways import _sparse_apply

        T = _sparse_apply(pool, h)
    torch.testing.assert_close(T[:, 1], h[:, 2:6].mean(dim=1))  # set B = genes 2..5
    torch.testing.assert_close(T[:, 4], h[:, 10:].mean(dim=1))  # genes in no set


def test_output_does_not_depend_on_the_order_of_gene_sets():
    """No positional encoding: the same sets listed in another order give the same velocity."""
    x, t, cond = inputs()
    reordered = {k: SETS[k] for k in ["C", "A", "D", "B"]}
    a, b = build(), build(reordered)
    assert not torch.equal(a.set_index, b.set_index)
    with torch.no_grad():
        torch.testing.assert_close(b(x, t, cond), a(x, t, cond), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.embed(x), a.embed(x), rtol=1e-5, atol=1e-6)


def test_equivariant_to_gene_order_and_reads_sub_panels():
    model = build()
    x, t, cond = inputs()
    perm = torch.randperm(DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x, t, cond)
        torch.testing.assert_close(model(x[:, perm], t, cond, gene_ids=perm), ref[:, perm], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.embed(x[:, perm], gene_ids=perm), model.embed(x), rtol=1e-5, atol=1e-6)
        # a panel without set D's genes and without any no-set gene: those tokens are dropped, output finite
        keep = torch.arange(8)
        pool, _, has_no_set = model.pool_maps(keep)
        assert pool.shape == (3, 8) and not has_no_set
        sub = model(x[:, keep], t, cond, gene_ids=keep)
        assert sub.shape == (5, 8) and torch.isfinite(sub).all()


def test_time_and_set_membership_both_matter():
    model = build()
    x, t, cond = inputs()
    other = build({"A": ["G0", "G9"], "B": ["G1", "G3", "G8"], "C": ["G4", "G6", "G7", "G12"]})
    with torch.no_grad():
        assert not torch.allclose(model(x, t, cond), model(x, 1 - t, cond))
        assert not torch.allclose(model(x, t, cond), other(x, t, cond))  # same weights, other sets


def test_load_before_setup_and_without_the_gmt(tmp_path):
    trained = build()
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    fresh = PathwayBackbone(DIM, n_conditions=2, gene_sets="/nonexistent.gmt", **SMALL)  # never read
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x, t, cond = inputs()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x, t, cond), trained(x, t, cond))


def test_random_control_changes_members_not_sizes():
    real, control = build(), build(control="random", control_seed=1)
    sizes = lambda m: sorted(torch.bincount(m.set_index).tolist())  # noqa: E731
    assert sizes(real) == sizes(control)
    assert not torch.equal(real.gene_index, control.gene_index)
    assert torch.equal(build(control="random", control_seed=1).gene_index, control.gene_index)


def test_clear_errors():
    with pytest.raises(ExprflowInputError, match="needs gene sets"):
        PathwayBackbone(DIM).setup_genes(PathwayBackbone.toy_gene_context(DIM))
    with pytest.raises(ExprflowInputError, match="control"):
        PathwayBackbone(DIM, control="shuffled")
    with pytest.raises(ExprflowInputError, match="coverage too low"):
        build({"A": [f"ENSG{i:011d}" for i in range(5)]}, min_coverage=0.05)
