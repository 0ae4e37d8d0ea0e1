"""StateFlow.get_cell_embedding: a gene-set model read on another gene panel (PBMC3k cells)."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError
from exprflow.models import StateFlow


@pytest.fixture(scope="module")
def trained(pbmc3k, tmp_path_factory):
    rng = np.random.default_rng(1)
    cells = np.sort(rng.choice(pbmc3k.n_obs, 160, replace=False))
    adata = pbmc3k[cells, :300].copy()
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    model = StateFlow(adata, backbone="deepsets", backbone_kwargs={"hidden": 16, "depth": 1, "phi_depth": 1,
                                                                     "time_dim": 16})
    model.train(max_steps=30, batch_size=32, progress_bar=False)
    path = tmp_path_factory.mktemp("emb") / "model"
    model.save(str(path))
    return StateFlow.load(str(path)), adata


def test_embedding_is_invariant_to_the_order_of_genes(trained):
    model, adata = trained
    base = model.get_cell_embedding(adata)
    assert base.shape == (adata.n_obs, 16) and np.isfinite(base).all()
    perm = np.random.default_rng(0).permutation(adata.n_vars)
    shuffled = adata[:, perm].copy()
    np.testing.assert_allclose(model.get_cell_embedding(shuffled), base, rtol=1e-4, atol=1e-5)


def test_unknown_genes_are_reported_and_dropped_only_when_asked(trained, caplog):
    model, adata = trained
    extra = sp.random(adata.n_obs, 3, density=0.3, format="csr", random_state=0) * 5
    extra.data = np.ceil(extra.data)
    wider = ad.AnnData(sp.hstack([adata.X, extra]).tocsr(), obs=adata.obs.copy())
    wider.var_names = list(adata.var_names) + ["NOT_A_GENE1", "NOT_A_GENE2", "NOT_A_GENE3"]
    before = wider.X.copy()
    with pytest.raises(ExprflowInputError, match="3 of 303 genes are not in the model"):
        model.get_cell_embedding(wider)
    dropped = model.get_cell_embedding(wider, on_unknown="drop")
    assert "NOT_A_GENE1" in caplog.text
    # the unknown genes are ignored, also in the library size: same embedding as the model's own panel
    np.testing.assert_allclose(dropped, model.get_cell_embedding(adata), rtol=1e-4, atol=1e-5)
    assert (wider.X != before).nnz == 0  # the user's AnnData is untouched


def test_a_subset_panel_embeds_and_changes_the_embedding(trained):
    model, adata = trained
    half = adata[:, ::2].copy()
    emb = model.get_cell_embedding(half)
    assert emb.shape == (adata.n_obs, 16) and np.isfinite(emb).all()
    assert not np.allclose(emb, model.get_cell_embedding(adata), atol=1e-4)


def test_no_shared_gene_and_position_backbones_are_clear_errors(trained, pbmc3k):
    model, adata = trained
    other = adata.copy()
    other.var_names = [f"ENSG{i:011d}" for i in range(other.n_vars)]
    with pytest.raises(ExprflowInputError, match="No gene in common"):
        model.get_cell_embedding(other)
    mlp = StateFlow(adata, backbone="mlp", backbone_kwargs={"hidden": 8, "depth": 1})
    with pytest.raises(ExprflowInputError, match="no pooled cell embedding"):
        mlp.get_cell_embedding(adata)
