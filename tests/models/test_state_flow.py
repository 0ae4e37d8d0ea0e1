"""StateFlow end to end on small data: train, generate, save/load, conditions, errors."""

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


def test_generate_returns_scverse_anndata(trained):
    adata, model = trained
    out = model.generate(conditions={"type0": 30, "type2": 20}, n_steps=8, seed=1)
    assert out.n_obs == 50 and list(out.var_names) == list(adata.var_names)
    assert sp.issparse(out.X) and np.issubdtype(out.X.dtype, np.integer)
    assert out.X.min() >= 0
    counts = out.obs["cell_type"].value_counts()
    assert counts[counts > 0].to_dict() == {"type0": 30, "type2": 20}
    assert (out.obs["source"] == "generated").all()
    prov = out.uns["exprflow"]
    assert prov["model"] == "StateFlow" and prov["nfe"] == 8 and prov["n_steps"] == 8


def test_training_reduces_loss_and_learns_type_profiles(trained):
    adata, model = trained
    losses = np.array([h[1] for h in model.history])
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


def test_generation_is_deterministic_for_a_seed(trained):
    _, model = trained
    a = model.generate(n_cells=20, n_steps=4, seed=5)
    b = model.generate(n_cells=20, n_steps=4, seed=5)
    c = model.generate(n_cells=20, n_steps=4, seed=6)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


@pytest.mark.parametrize("solver,nfe", [("euler", 6), ("heun", None), ("rk4", 24)])
def test_solvers_report_nfe(trained, solver, nfe):
    _, model = trained
    out = model.generate(n_cells=10, n_steps=6, solver=solver)
    if nfe is not None:
        assert out.uns["exprflow"]["nfe"] == nfe
    assert out.uns["exprflow"]["nfe"] > 6 or solver == "euler"


def test_unknown_condition_is_a_clear_error(trained):
    _, model = trained
    with pytest.raises(ExprflowInputError, match="type0"):
        model.generate(conditions={"no_such_type": 3})


def test_save_load_roundtrip(trained, tmp_path):
    adata, model = trained
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["var_names"] == list(adata.var_names) and cfg["model"] == "StateFlow"
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    loaded = StateFlow.load(tmp_path / "m", adata=adata)
    a = model.generate(n_cells=15, n_steps=4, seed=9)
    b = loaded.generate(n_cells=15, n_steps=4, seed=9)
    assert (a.X != b.X).nnz == 0
    with pytest.raises(ExprflowInputError, match="exists"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)


def test_load_checks_genes(trained, tmp_path):
    adata, model = trained
    model.save(tmp_path / "m2")
    other = adata[:, :30].copy()
    with pytest.raises(ExprflowInputError, match="genes do not match"):
        StateFlow.load(tmp_path / "m2", adata=other)


def test_pickled_code_in_weights_is_refused(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "m3")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"x": Evil()}, tmp_path / "m3" / "weights.pt")
    with pytest.raises(ExprflowInputError, match="pickled code"):
        StateFlow.load(tmp_path / "m3")


def test_user_anndata_is_not_modified(counts_adata):
    before = counts_adata.copy()
    StateFlow.setup_anndata(counts_adata, condition_key="cell_type")
    model = StateFlow(counts_adata, **SMALL)
    model.train(max_steps=3, batch_size=32, progress_bar=False)
    assert (counts_adata.X != before.X).nnz == 0
    assert counts_adata.obs.equals(before.obs) and counts_adata.uns.keys() == before.uns.keys()
    assert model.setup.condition_key == "cell_type"  # remembered by setup_anndata


def test_generate_before_train_is_an_error(counts_adata):
    with pytest.raises(ExprflowInputError, match="not trained"):
        StateFlow(counts_adata, **SMALL).generate(n_cells=3)


def test_unknown_option_is_an_error(counts_adata):
    with pytest.raises(ExprflowInputError, match="Unknown StateFlow option"):
        StateFlow(counts_adata, hidden_size=3)


def test_non_integer_counts_rejected(counts_adata):
    bad = counts_adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data = bad.X.data * 0.5 + 0.25
    with pytest.raises(ExprflowInputError):
        StateFlow(bad)


def test_top_level_exports():
    import exprflow

    assert exprflow.StateFlow is StateFlow
    assert callable(exprflow.evaluate)
    with pytest.raises(AttributeError):
        exprflow.no_such_name
