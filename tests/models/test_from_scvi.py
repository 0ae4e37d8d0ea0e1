"""LatentFlow.from_scvi: a flow on a user's trained scVI model (needs the scvi extra)."""

import numpy as np
import pytest
from synthetic import make_counts_adata

from exprflow.errors import ExprflowInputError
from exprflow.models import LatentFlow

scvi = pytest.importorskip("scvi")


def _scvi_model(adata, **setup):
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata, **setup)
    model = scvi.model.SCVI(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=3, accelerator="cpu", enable_progress_bar=False, batch_size=64)
    return model


def test_flow_on_an_scvi_latent_space_trains_only_the_flow(tmp_path):
    adata = make_counts_adata(n_cells=150, n_genes=30, seed=2)
    vae = _scvi_model(adata)
    decoder = {k: v.clone() for k, v in vae.module.state_dict().items()}
    model = LatentFlow.from_scvi(vae, condition_key="cell_type", backbone_kwargs={"hidden": 16, "depth": 1})
    assert model.phases == ("flow",) and model.state_dim == 4
    model.train(flow_steps=20, progress_bar=False)
    assert set(model.history) == {"flow"}  # scVI is not trained again
    assert all((decoder[k] == v).all() for k, v in vae.module.state_dict().items())
    out = model.generate(conditions={"type1": 12}, n_steps=2, seed=1)
    assert out.shape == (12, 30) and out.X.min() >= 0 and np.allclose(out.X.data, np.round(out.X.data))
    z = model.get_latent_representation(adata)
    np.testing.assert_allclose(z, vae.get_latent_representation(adata), atol=1e-4)
    model.save(tmp_path / "m")
    loaded = LatentFlow.load(tmp_path / "m")  # scVI rebuilt from the saved options and weights
    again = loaded.generate(conditions={"type1": 12}, n_steps=2, seed=1)
    assert (again.X != out.X).nnz == 0


def test_scvi_models_with_covariates_or_untrained_are_refused():
    adata = make_counts_adata(n_cells=120, n_genes=20, seed=3)
    adata.obs["donor"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    with pytest.raises(ExprflowInputError, match="without covariates; this one has batch"):
        LatentFlow.from_scvi(_scvi_model(adata, batch_key="donor"))
    plain = adata.copy()
    scvi.model.SCVI.setup_anndata(plain)
    with pytest.raises(ExprflowInputError, match="not trained"):
        LatentFlow.from_scvi(scvi.model.SCVI(plain))
    with pytest.raises(ExprflowInputError, match="vae is set by the scVI model"):
        LatentFlow.from_scvi(_scvi_model(make_counts_adata(n_cells=80, n_genes=20)), vae={"n_latent": 5})
