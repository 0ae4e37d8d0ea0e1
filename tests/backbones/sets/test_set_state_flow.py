"""The gene-set backbones inside StateFlow on real data (PBMC3k subset): train, generate, save, load."""

import numpy as np
import pytest
import torch

from exprflow.models import StateFlow
from exprflow.representations.tokens import nonzero_medians

SMALL = {
    "deepsets": {"hidden": 16, "depth": 1, "phi_depth": 1, "time_dim": 16},
    "set_transformer": {"hidden": 16, "depth": 1, "heads": 2, "n_inducing": 8, "time_dim": 16},
    "rank_tokens": {"hidden": 16, "depth": 1, "heads": 2, "max_tokens": 64, "time_dim": 16},
    "value_bins": {"hidden": 16, "depth": 1, "heads": 2, "attention": "isab", "n_inducing": 8, "time_dim": 16},
}


@pytest.fixture(scope="module")
def pbmc_small(pbmc3k):
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(pbmc3k.n_obs, 200, replace=False))
    adata = pbmc3k[cells, :400].copy()  # 200 cells x 400 genes
    keep = np.asarray(adata.X.sum(axis=1)).ravel() > 0
    return adata[keep].copy()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_flow_with_set_backbone_trains_generates_saves_loads(name, pbmc_small, tmp_path):
    torch.manual_seed(0)
    model = StateFlow(pbmc_small, condition_key="cell_type", backbone=name, backbone_kwargs=SMALL[name])
    genes = model.backbone.genes
    # setup_genes ran before training: names, standardisation (and rank medians) are in buffers
    assert bool(genes.has_names)
    np.testing.assert_allclose(genes.loc.numpy(), model.representation.mean)
    if name == "rank_tokens":
        np.testing.assert_allclose(model.backbone.medians.numpy(), nonzero_medians(pbmc_small.X), rtol=1e-6)
    model.train(max_steps=20, batch_size=64, progress_bar=False)
    assert np.isfinite(model.history["flow"]["loss"]).all()
    fake = model.generate(n_cells=30, n_steps=4, seed=1)
    assert fake.shape == (30, pbmc_small.n_vars) and fake.X.sum() > 0
    model.save(str(tmp_path / "m"))
    loaded = StateFlow.load(str(tmp_path / "m"), adata=pbmc_small)
    again = loaded.generate(n_cells=30, n_steps=4, seed=1)
    np.testing.assert_array_equal(again.X.toarray(), fake.X.toarray())
    lg = loaded.backbone.genes
    torch.testing.assert_close(lg.gene_hashes, genes.gene_hashes)
    assert loaded.backbone.match_genes(list(pbmc_small.var_names[[5, 2]])).model_index.tolist() == [5, 2]
    # the pooled cell embedding of real cells (for probes) is finite and per cell
    x = loaded.representation.encode(pbmc_small.X[:8])
    with torch.no_grad():
        emb = loaded.backbone.embed(x)
    assert emb.shape == (8, 16) and torch.isfinite(emb).all()
