"""StateFlow specifics (the shared model contract is in test_model_contract.py)."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from exprflow.errors import ExprflowInputError
from exprflow.models import StateFlow

SMALL = {"backbone_kwargs": {"hidden": 64, "depth": 2}}


@pytest.fixture(scope="module")
def trained(request):
    from synthetic import make_counts_adata

    adata = make_counts_adata(n_cells=200, n_genes=40, seed=3)
    model = StateFlow(adata, condition_key="cell_type", **SMALL)
    model.train(max_steps=150, batch_size=64, progress_bar=False)
    return adata, model


def test_training_reduces_loss_and_learns_type_profiles(trained):
    adata, model = trained
    losses = model.history["flow"]["loss"].to_numpy()
    assert losses[-20:].mean() < losses[:20].mean()
    # generated cells of each type must be closer (in mean log profile) to their own type than to others
    gen = model.generate(conditions={f"type{k}": 150 for k in range(3)}, n_steps=16, seed=2)
    real = adata.X.toarray()
    def profile(x):
        return np.log1p(x / x.sum(1, keepdims=True) * 1e4).mean(0)
    real_prof = {k: profile(real[(adata.obs.cell_type == f"type{k}").to_numpy()]) for k in range(3)}
    for k in range(3):
        g = profile(gen[(gen.obs.cell_type == f"type{k}").to_numpy()].X.toarray())
        dists = [np.linalg.norm(g - real_prof[j]) for j in range(3)]
        assert int(np.argmin(dists)) == k


@pytest.mark.parametrize("solver,nfe", [("euler", 6), ("heun", None), ("rk4", 24)])
def test_solvers_report_nfe(trained, solver, nfe):
    _, model = trained
    out = model.generate(n_cells=10, n_steps=6, solver=solver)
    if nfe is not None:
        assert out.uns["exprflow"]["nfe"] == nfe
    assert out.uns["exprflow"]["nfe"] > 6 or solver == "euler"


def test_top_level_exports():
    import exprflow

    assert exprflow.StateFlow is StateFlow
    assert exprflow.LatentFlow.__name__ == "LatentFlow"
    assert callable(exprflow.evaluate)
    with pytest.raises(AttributeError):
        exprflow.no_such_name
