"""Every registered representation keeps one contract: fit -> standardised train states, encode them
again, decode back to expression, and save / load to the same states."""

import numpy as np
import pytest
import scipy.sparse as sp
from synthetic import make_counts_adata

from exprflow.representations.base import REPRESENTATIONS
from exprflow.representations.vae import VAEConfig
from exprflow.training.options import PhaseBudget, TrainerOptions
from exprflow.training.plans import OptimConfig

def _scvi(n_genes):
    """A small trained scVI model on synthetic counts (skipped without the scvi extra)."""
    scvi = pytest.importorskip("scvi")
    adata = make_counts_adata(n_cells=90, n_genes=n_genes, seed=1)
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    return REPRESENTATIONS.get("scvi")(model)


BUILD = {
    "scvi": _scvi,
    "count_vae": lambda n_genes: REPRESENTATIONS.get("count_vae")(n_genes, VAEConfig(n_latent=3, n_hidden=16)),
    "gaussian": lambda n_genes: REPRESENTATIONS.get("gaussian")(n_genes, 3),
}


def test_every_registered_representation_is_covered():
    assert sorted(BUILD) == REPRESENTATIONS.names()


@pytest.mark.parametrize("name", sorted(BUILD))
def test_fit_encode_decode_save_load(name):
    X = sp.csr_matrix(make_counts_adata(n_cells=90, n_genes=20, seed=1).X)
    rep = BUILD[name](20)
    states = rep.fit(X, optim=OptimConfig(), budget=PhaseBudget(5, None, 32), trainer=TrainerOptions(progress_bar=False))
    assert states.shape == (90, rep.dim) and states.dtype == np.float32
    np.testing.assert_allclose(states.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(states.std(0), 1, atol=1e-3)
    np.testing.assert_allclose(rep.encode(X), states, atol=1e-5)
    out = rep.decode(states[:7], np.random.default_rng(0), sample=False)
    assert sp.issparse(out) and out.shape == (7, 20) and out.min() >= 0
    sampled = rep.decode(states[:7], np.random.default_rng(0))
    again = rep.decode(states[:7], np.random.default_rng(0))
    assert (sampled != again).nnz == 0  # a draw is a function of the generator
    fields, tensors = rep.state_dict()
    loaded = BUILD[name](20).load_state_dict(fields, tensors)
    np.testing.assert_allclose(loaded.encode(X), states, atol=1e-5)
