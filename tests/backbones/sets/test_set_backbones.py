"""DeepSets / Set Transformer / rank tokens / value bins: sparse path, permutations, gene panels."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from backbone_helpers import build_backbone, perturb_parameters
from exprflow.backbones.base import GeneContext
from exprflow.backbones.sets import DeepSetsBackbone
from exprflow.representations import StateVector
from exprflow.representations.tokens import nonzero_medians

SET_NAMES = ["deepsets", "set_transformer", "value_bins", "rank_tokens"]
G = 20


def _model(name, dim=G, n_conditions=2, seed=0):
    torch.manual_seed(seed)
    return perturb_parameters(build_backbone(name, dim, n_conditions), seed=seed).eval()


def _counts(n_cells=16, n_genes=G, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(2.0, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.3)
    dense[:, 0] += 1
    return sp.csr_matrix(dense.astype(np.float32))


def _context(counts, names=None):
    rep = StateVector().fit(counts)
    names = names or [f"g{i}" for i in range(counts.shape[1])]
    return GeneContext(names, pd.DataFrame(index=names), counts, rep.encode, log1p_mean=rep.mean,
                       log1p_std=rep.std), rep


@pytest.mark.parametrize("name", SET_NAMES)
def test_fresh_model_outputs_zero_velocity(name):
    torch.manual_seed(0)
    model = build_backbone(name, G, 2)
    out = model(torch.randn(4, G), torch.rand(4), torch.tensor([0, 1, 2, 0]))
    assert torch.count_nonzero(out) == 0


def _deepsets_on_counts(n_cells, seed):
    """A DeepSets set up on random counts: (model, representation, counts, sparse log1p values)."""
    counts = _counts(n_cells=n_cells, seed=seed)
    ctx, rep = _context(counts)
    model = _model("deepsets")
    model.setup_genes(ctx)
    return model, rep, counts, sp.csr_matrix(np.log1p(counts.toarray() / counts.sum(1).A * 1e4))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")
def test_deepsets_sparse_and_dense_paths_agree_and_sparse_cost_follows_detected_genes():
    model, rep, counts, log1p = _deepsets_on_counts(n_cells=12, seed=1)
    x = rep.encode(counts)
    cond = torch.tensor([0, 1, 2] * 4)
    with torch.no_grad():
        dense = model.embed(x, 0.7, cond)
        rows_seen = []
        hook = model.phi.register_forward_hook(lambda m, i, o: rows_seen.append(i[0].numel() // i[0].shape[-1]))
        sparse = model.embed_sparse(log1p, 0.7, cond)
        hook.remove()
    torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-5)
    assert sorted(rows_seen) == sorted([G, log1p.nnz])  # phi(e_g, 0) once per gene + once per detected entry
    # torch sparse CSR input and a gene subset (rows of the model's table) give the same as dense
    sub = torch.tensor([5, 1, 9, 0, 13])
    sub_log1p = sp.csr_matrix(log1p[:, sub.numpy()])
    with torch.no_grad():
        dense_sub = model.embed(x[:, sub], None, None, gene_ids=sub)
        t_csr = torch.from_numpy(sub_log1p.toarray()).to_sparse_csr()
        torch.testing.assert_close(model.embed_sparse(t_csr, gene_ids=sub), dense_sub, rtol=1e-4, atol=1e-5)
        # the sparse path is not trivially equal: other values give another embedding
        assert not torch.allclose(model.embed_sparse(sub_log1p * 2.0, gene_ids=sub), dense_sub, atol=1e-4)


def test_deepsets_sparse_cache_skips_the_gene_pass_and_follows_weight_updates():
    model, rep, counts, log1p = _deepsets_on_counts(n_cells=8, seed=2)
    rows_seen = []
    model.phi.register_forward_hook(lambda m, i, o: rows_seen.append(i[0].numel() // i[0].shape[-1]))
    with torch.no_grad():
        first = model.embed_sparse(log1p)
        rows_seen.clear()
        again = model.embed_sparse(log1p)
    assert rows_seen == [log1p.nnz]  # cached: phi runs on the detected entries only
    torch.testing.assert_close(again, first)
    with torch.no_grad():
        model.phi[0].weight.mul_(1.5)  # an in-place update (as an optimiser step) invalidates the cache
        updated = model.embed_sparse(log1p)
        torch.testing.assert_close(updated, model.embed(rep.encode(counts)), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(updated, first, atol=1e-5)
    model.embed_sparse(log1p).sum().backward()  # with gradients: no cache, gradients reach the embeddings
    assert model.genes.embedding.weight.grad is not None and model.genes.embedding.weight.grad.abs().sum() > 0


def test_rank_tokens_embedding_matches_the_full_pass_and_embeds_only_the_ranked_genes():
    from exprflow.backbones.sets.base import GeneSetBackbone

    model = _model("rank_tokens").eval()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, G, generator=gen)
    lookups = []
    model.genes.embedding.register_forward_hook(lambda m, i, o: lookups.append(i[0].numel()))
    with torch.no_grad():
        full = GeneSetBackbone.embed(model, x, 0.4)  # every gene tokenised, then the same sequence
        lookups.clear()
        fast = model.embed(x, 0.4)
    torch.testing.assert_close(fast, full)
    n_tokens = min(model.max_tokens, int((model.genes.to_log1p(x, torch.arange(G)) > 1e-3).sum(1).max()))
    assert lookups == [x.shape[0] * n_tokens] and n_tokens < G


@pytest.mark.parametrize("name", SET_NAMES)
def test_permuting_genes_permutes_velocities_and_keeps_cell_embedding(name):
    model = _model(name)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, G, generator=gen)
    t, cond = torch.rand(5, generator=gen), torch.tensor([0, 1, 2, 1, 0])
    perm = torch.randperm(G, generator=gen)
    with torch.no_grad():
        v, cell = model(x, t, cond), model.embed(x, t, cond)
        v_p = model(x[:, perm], t, cond, gene_ids=perm)  # values and embeddings permuted together
        cell_p = model.embed(x[:, perm], t, cond, gene_ids=perm)
        torch.testing.assert_close(v_p, v[:, perm], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cell_p, cell, rtol=1e-4, atol=1e-5)
        # permuting values alone (genes keep their embeddings) is a different cell
        assert not torch.allclose(model(x[:, perm], t, cond), v[:, perm], atol=1e-4)
        assert not torch.allclose(model.embed(x[:, perm], t, cond), cell, atol=1e-4)


@pytest.mark.parametrize("name", SET_NAMES)
def test_setup_genes_stores_standardisation_and_names_in_buffers(name, tmp_path):
    counts = _counts(seed=2)
    ctx, rep = _context(counts)
    model = _model(name)
    model.setup_genes(ctx)
    torch.testing.assert_close(model.genes.loc, torch.as_tensor(rep.mean))
    torch.testing.assert_close(model.genes.scale, torch.as_tensor(rep.std))
    if name == "rank_tokens":
        torch.testing.assert_close(model.medians, torch.as_tensor(nonzero_medians(counts), dtype=torch.float32))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    fresh = build_backbone(name, G, 2).eval()  # what StateFlow.load builds (no setup_genes)
    fresh.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = rep.encode(counts)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, 0.5), model(x, 0.5))
    assert fresh.match_genes(["g3", "g0"]).model_index.tolist() == [3, 0]


@pytest.mark.parametrize("name", ["deepsets", "set_transformer", "value_bins"])
def test_other_panel_maps_shared_genes_by_name(name):
    names = [f"g{i}" for i in range(G)]
    counts = _counts(seed=4)
    ctx, rep = _context(counts, names)
    model = _model(name)
    model.setup_genes(ctx)
    x = rep.encode(counts)
    keep = [7, 3, 11, 0, 15, 2]
    panel = [names[i] for i in keep] + ["UNSEEN1", "UNSEEN2"]  # another dataset's panel, other order
    x_panel = torch.cat([x[:, keep], torch.randn(x.shape[0], 2)], dim=1)
    match = model.match_genes(panel, on_unknown="drop")
    assert match.unknown == ["UNSEEN1", "UNSEEN2"]
    cols = torch.from_numpy(match.panel_index)
    ordered = torch.tensor(sorted(keep))
    with torch.no_grad():
        cell = model.embed(x_panel[:, cols], gene_ids=match.model_index)
        v = model(x_panel[:, cols], 0.3, None, gene_ids=match.model_index)
        # same shared genes in the model's own order
        torch.testing.assert_close(cell, model.embed(x[:, ordered], gene_ids=ordered), rtol=1e-4, atol=1e-5)
        v_ref = model(x[:, ordered], 0.3, None, gene_ids=ordered)
    pos = {g: j for j, g in enumerate(ordered.tolist())}
    torch.testing.assert_close(v, v_ref[:, [pos[g] for g in keep]], rtol=1e-4, atol=1e-5)


def test_deepsets_rejects_wrong_panel_width():
    model = _model("deepsets")
    with pytest.raises(ValueError, match="columns"):
        model(torch.randn(2, G - 1), 0.5)
    with pytest.raises(ValueError, match="columns"):
        model.embed_sparse(sp.csr_matrix((2, G - 1)))
    assert isinstance(model, DeepSetsBackbone)
