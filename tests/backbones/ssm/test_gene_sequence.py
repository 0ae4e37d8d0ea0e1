"""Gene-axis sequence backbones: patching, the fixed stored gene order, parameter scaling, StateFlow use."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from exprflow.backbones import BACKBONES
from exprflow.backbones.gene_sequence import GeneSequenceBackbone, genomic_order
from exprflow.errors import ExprflowInputError

SEQUENCE_NAMES = ["s4d", "hyena", "mamba", "transformer"]
PBMC = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbmc3k_counts.h5ad"


def _small(name, dim, **kw):
    cls = BACKBONES.get(name)
    return cls(dim=dim, n_conditions=2, **{**cls.small_config(), **kw})


@pytest.mark.parametrize("name", SEQUENCE_NAMES)
def test_registered_and_sequence_length(name):
    model = _small(name, 10)
    assert isinstance(model, GeneSequenceBackbone)
    assert model.length == 3  # ceil(10 / 4): the last patch is padded


def test_fresh_backbone_outputs_zero_velocity():
    model = _small("s4d", 10)
    assert torch.count_nonzero(model(torch.randn(3, 10), torch.rand(3))) == 0


def test_gene_order_is_a_stored_permutation():
    model = _small("hyena", 9)
    perm = np.random.default_rng(0).permutation(9)
    model.set_gene_order(perm)
    assert torch.equal(model.state_dict()["gene_order"], torch.as_tensor(perm))
    assert torch.equal(model.gene_order[model.gene_rank], torch.arange(9))
    with pytest.raises(ValueError, match="permutation"):
        model.set_gene_order([0, 0, 1, 2, 3, 4, 5, 6, 7])


def test_sequence_path_is_equivariant_to_consistent_reordering():
    torch.manual_seed(0)
    model = _small("s4d", 8, skip_rank=0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    perm = np.random.default_rng(1).permutation(8)
    x, t = torch.randn(3, 8, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    model.set_gene_order(perm)
    v = model(x, t)
    twin = _small("s4d", 8, skip_rank=0).double()
    twin.load_state_dict(model.state_dict())
    twin.set_gene_order(np.arange(8))
    torch.testing.assert_close(twin(x[:, perm], t), v[:, perm])


def test_genomic_order_from_var_and_clear_error():
    var = pd.DataFrame({"chrom": [2, 1, 1, np.nan], "start": [5, 30, 10, 1]}, index=list("abcd"))
    assert genomic_order(var, ["chrom", "start"]).tolist() == [2, 1, 0, 3]
    with pytest.raises(ExprflowInputError, match="genomic position"):
        genomic_order(var, "chromosome_start")


def test_parameters_do_not_grow_as_genes_times_width():
    """Doubling G adds only position embeddings (L x W) and the skip basis (2 K G), not G x W twice."""
    small, big = (BACKBONES.get("s4d")(dim=g, width=64, depth=2, patch_size=16) for g in (2000, 4000))
    mlp_small, mlp_big = (BACKBONES.get("mlp")(dim=g, hidden=64, depth=2) for g in (2000, 4000))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    grow = count(big) - count(small)
    assert grow == (250 - 125) * 64 + 2 * 16 * 2000
    assert count(mlp_big) - count(mlp_small) == 2000 * 64 * 4 + 3 * 2000  # in, out, 2-wide skip


@pytest.mark.skipif(not PBMC.exists(), reason="shared data not present")
def test_state_flow_with_genomic_order_on_pbmc3k(tmp_path):
    """Real data: train briefly with an ordering column, generate, save, load; the order survives."""
    from exprflow import StateFlow

    adata = ad.read_h5ad(PBMC)[:300].copy()
    adata.var["pos"] = np.random.default_rng(0).permutation(adata.n_vars)  # a stand-in position column
    before = adata.copy()
    kwargs = {**BACKBONES.get("mamba").small_config(), "patch_size": 32, "gene_order_key": "pos"}
    model = StateFlow(adata, condition_key="cell_type", backbone="mamba", backbone_kwargs=kwargs)
    expected = np.argsort(adata.var["pos"].to_numpy(), kind="stable")
    assert model.backbone.gene_order.numpy().tolist() == expected.tolist()
    model.train(max_steps=5, batch_size=32, progress_bar=False)
    fake = model.generate(n_cells=20, n_steps=2)
    assert fake.shape == (20, adata.n_vars) and list(fake.var_names) == list(adata.var_names)
    model.save(tmp_path / "m")
    again = StateFlow.load(tmp_path / "m", adata=adata)
    assert again.backbone.gene_order.numpy().tolist() == expected.tolist()
    a, b = model.generate(n_cells=20, n_steps=2, seed=3), again.generate(n_cells=20, n_steps=2, seed=3)
    assert (a.X != b.X).nnz == 0
    assert adata.var.equals(before.var) and (adata.X != before.X).nnz == 0  # the user's AnnData untouched


@pytest.mark.skipif(not PBMC.exists(), reason="shared data not present")
def test_missing_order_key_is_a_user_error():
    from exprflow import StateFlow

    adata = ad.read_h5ad(PBMC)[:50].copy()
    with pytest.raises(ExprflowInputError, match="gene_order_key"):
        StateFlow(adata, backbone="s4d", backbone_kwargs={"gene_order_key": "start"})
